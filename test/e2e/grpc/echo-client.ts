/**
 * A gRPC client for the mesh scenario, as a child process that stays up (so certificate
 * rotation is seen without a restart): each JSON line on stdin is one call on a new channel (a
 * new connection: grpc-js would otherwise reuse a subchannel), answered by one JSON line.
 *   {"id": 1, "kind": "xds", "target": "xds:///echo-shop.marathon.mesos:8080"}   XdsChannelCredentials
 *   {"id": 2, "kind": "plaintext", "target": "127.0.1.1:8080"}
 *   {"id": 3, "kind": "tls", "target": "127.0.1.1:8080", "rootPem": ..., "certPem": ..., "keyPem": ...}
 * With `"keep": true` the channel stays open afterwards (its xDS watches with it).
 * The bootstrap is in GRPC_XDS_BOOTSTRAP_CONFIG.
 */
import * as readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import * as xds from '@grpc/grpc-js-xds';
import { certificateSeen, type EchoReply } from './echo';

xds.register();

interface CallRequest {
  id: number;
  kind: 'xds' | 'plaintext' | 'tls';
  target: string;
  rootPem?: string;
  certPem?: string;
  keyPem?: string;
  keep?: boolean;
}

const kept: grpc.Client[] = [];

function credentials(r: CallRequest): grpc.ChannelCredentials {
  switch (r.kind) {
    case 'xds':
      return new xds.XdsChannelCredentials(grpc.credentials.createInsecure());
    case 'plaintext':
      return grpc.credentials.createInsecure();
    case 'tls':
      return grpc.credentials.createSsl(Buffer.from(r.rootPem!), Buffer.from(r.keyPem!), Buffer.from(r.certPem!), { checkServerIdentity: () => undefined });
  }
}

function call(r: CallRequest): Promise<Record<string, unknown>> {
  const client = new grpc.Client(r.target, credentials(r), { 'grpc.use_local_subchannel_pool': 1 });
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 5000);
    const c = client.makeUnaryRequest<unknown, EchoReply>(
      '/citadel.e2e.Echo/Echo',
      (v) => Buffer.from(JSON.stringify(v)),
      (b) => JSON.parse(b.toString('utf8')),
      {},
      new grpc.Metadata(),
      { deadline },
      (err, reply) => {
        const server = certificateSeen(c.getAuthContext()?.sslPeerCertificate);
        if (r.keep) kept.push(client);
        else client.close();
        resolve(err ? { id: r.id, ok: false, code: grpc.status[err.code], details: err.details } : { id: r.id, ok: true, reply, ...(server && { server }) });
      },
    );
  });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const r = JSON.parse(line) as CallRequest;
  void call(r).then((out) => process.stdout.write(`${JSON.stringify(out)}\n`));
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
