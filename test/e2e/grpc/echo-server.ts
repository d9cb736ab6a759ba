/**
 * A proxyless gRPC server for the mesh scenario (a child process: grpc-js-xds keeps globals):
 * XdsServerCredentials on `<ip>:<port>` (argv[2]), its bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG.
 * Prints `{"ready": port}` once xDS gave it a Listener it serves; each reply names the caller's
 * certificate as the server saw it.
 */
import * as grpc from '@grpc/grpc-js';
import * as xds from '@grpc/grpc-js-xds';
import { certificateSeen, ECHO_SERVICE, type EchoReply } from './echo';

xds.register(); // without it every server Listener is NACKed (the router filter is unknown)
const address = process.argv[2];
const server = new xds.XdsServer();
server.addService(ECHO_SERVICE, {
  echo: (call: grpc.ServerUnaryCall<unknown, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
    const auth = call.getAuthContext();
    callback(null, { transportSecurityType: auth.transportSecurityType, peer: certificateSeen(auth.sslPeerCertificate) });
  },
});
server.bindAsync(address, new xds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()), (err, port) => {
  if (err) {
    process.stderr.write(`bind ${address}: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ ready: port })}\n`);
});
process.on('SIGTERM', () => server.forceShutdown());
