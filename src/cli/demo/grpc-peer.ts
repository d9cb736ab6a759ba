/**
 * A proxyless gRPC service of the demo's mesh act, as its own process (grpc-js-xds keeps one xDS
 * client per process, as a real service has), configured only by GRPC_XDS_BOOTSTRAP_CONFIG:
 *
 *   node grpc-peer.js server <ip:port>   an XdsServer with XdsServerCredentials: its TLS (or none)
 *                                        comes from the xDS server Listener; answers Who with the
 *                                        caller's SPIFFE ID (null over plaintext)
 *   node grpc-peer.js client             one call per stdin line, {"id", "target"} over an
 *                                        xds:/// target with XdsChannelCredentials, or
 *                                        {"id", "plaintext": "ip:port"} with insecure credentials
 *
 * It writes one JSON line per event on stdout: {"event": "serving"}, {"event": "result", ...}.
 */
import * as readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import * as xds from '@grpc/grpc-js-xds';

export interface WhoReply {
  /** the caller's URI SAN as the server's TLS saw it; null over plaintext */
  caller: string | null;
  server: string;
}

export interface CallRequest {
  id: number;
  /** an xds:/// target, dialled with XdsChannelCredentials */
  target?: string;
  /** host:port, dialled with insecure credentials (no xDS) */
  plaintext?: string;
}

export type CallResult = { id: number; ok: true; reply: WhoReply } | { id: number; ok: false; code: number; error: string };

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString('utf8')) as unknown,
};

export const WHO_SERVICE: grpc.ServiceDefinition = {
  Who: {
    path: '/citadel.demo.Echo/Who',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

const emit = (v: object) => process.stdout.write(JSON.stringify(v) + '\n');

function serve(address: string): void {
  const server = new xds.XdsServer();
  server.addService(WHO_SERVICE, {
    Who: (call: grpc.ServerUnaryCall<unknown, WhoReply>, done: grpc.sendUnaryData<WhoReply>) => {
      const san = call.getAuthContext()?.sslPeerCertificate?.subjectaltname;
      const uri = san?.split(', ').find((s) => s.startsWith('URI:'))?.slice(4);
      done(null, { caller: uri ?? null, server: address });
    },
  });
  // the callback comes once the xDS server has sent a usable Listener for this address
  server.bindAsync(address, new xds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()), (err) => emit(err ? { event: 'error', error: err.message } : { event: 'serving', address }));
  const stop = () => {
    server.forceShutdown();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.stdin.on('end', stop).resume(); // the demo went away
}

function client(): void {
  const Client = grpc.makeGenericClientConstructor(WHO_SERVICE, 'Echo');
  const xdsCredentials = new xds.XdsChannelCredentials(grpc.credentials.createInsecure());
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('close', () => process.exit(0)); // the demo went away
  lines.on('line', (line) => {
    const req = JSON.parse(line) as CallRequest;
    const [target, credentials] = req.target ? [req.target, xdsCredentials] : [req.plaintext!, grpc.credentials.createInsecure()];
    // a channel per call with its own subchannels: a new connection, so a policy change shows at once
    const c = new Client(target, credentials, { 'grpc.use_local_subchannel_pool': 1 });
    c.makeUnaryRequest('/citadel.demo.Echo/Who', json.serialize, json.deserialize, {}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err: grpc.ServiceError | null, reply?: unknown) => {
      c.close();
      emit({ event: 'result', ...(err ? { id: req.id, ok: false, code: err.code, error: err.details } : { id: req.id, ok: true, reply }) });
    });
  });
  process.once('SIGTERM', () => process.exit(0));
}

if (require.main === module) {
  xds.register(); // the server needs it too: it registers the HTTP filters its Listener is checked against
  const [role, address] = process.argv.slice(2);
  if (role === 'server' && address) serve(address);
  else if (role === 'client') client();
  else {
    process.stderr.write('usage: grpc-peer.js server <ip:port> | client\n');
    process.exitCode = 2;
  }
}
