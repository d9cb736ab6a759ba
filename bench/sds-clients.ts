/**
 * SDS clients for bench/sds.js, as a process of their own, speaking as Envoy does: one HTTP/2
 * connection per identity socket, several StreamSecrets streams on it with one resource name
 * each, a first request carrying a node the size of a real Envoy 1.40's (about 60 KB, most of it
 * the 516 `extensions`), an ACK for every response, Envoy's 256 MiB receive windows.
 *
 *   node dist/bench/sds-clients.js
 *
 * Reads one JSON line on stdin: {"sdsDir", "identities": [[ns, sa], ...], "perIdentity", "trustDomain"},
 * then commands, one per line, each answered by one JSON line on stdout (times are Date.now()):
 *   open          connect and open every stream at once -> {"connected": t, "firstAll": t, "streams": N}
 *   mark          remember each stream's response count -> {"marked": t}; then, once every stream
 *                 has had one more response: {"updatedAll": t, "firstUpdate": t}
 *   warm N        N streams opened one after another on warm identities, each closed after its first
 *                 response -> {"warm": {"n", "p50Ms", "p99Ms", "maxMs"}}
 *   verify        decodes the last secret of one stream per identity and checks it names the
 *                 identity -> {"verified": N, "problems": [...]}
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { X509Certificate } from 'node:crypto';
import { discoveryCodec } from '../src/api/discovery';
import { envoyProtoRoot, SDS_PROTO_FILES } from '../src/api/envoy-protos';
import { frame, MessageReader } from '../src/api/grpc/framing';
import { SECRET_TYPE_URL } from '../src/api/sds';
import { Writer } from '../src/api/wire';

const PATH = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';
const TYPE_URL = SECRET_TYPE_URL.v3;
const ENVOY_WINDOW = 256 * 1024 * 1024;

/** A node like a real Envoy 1.40 sends on the first message of each stream (research: about 60 KB, 516 extensions). */
export function envoyLikeNode(id: string, cluster: string): Buffer {
  const Node = envoyProtoRoot(SDS_PROTO_FILES).lookupType('envoy.config.core.v3.Node');
  const categories = ['envoy.filters.http', 'envoy.filters.network', 'envoy.transport_sockets.upstream', 'envoy.clusters', 'envoy.access_loggers', 'envoy.matching.input_matchers'];
  const extensions = Array.from({ length: 516 }, (_, i) => {
    const category = categories[i % categories.length];
    const name = `${category}.ext_${i}`;
    return { name, category, type_urls: [`envoy.extensions.${name.slice(6)}.v3.Config`] };
  });
  const node = {
    id, cluster,
    metadata: { fields: { CITADEL_CERT_MODE: { string_value: 'sds' }, CITADEL_GENERATOR: { string_value: 'envoy' } } },
    user_agent_name: 'envoy',
    user_agent_build_version: { version: { major_number: 1, minor_number: 40 }, metadata: { fields: { 'revision.sha': { string_value: '9e5580933739775e8bce696a57a2e1bc99368f23' }, 'revision.status': { string_value: 'Clean' }, 'build.type': { string_value: 'RELEASE' }, 'ssl.version': { string_value: 'BoringSSL' } } } },
    extensions,
  };
  return Buffer.from(Node.encode(Node.fromObject(node)).finish());
}

interface Stream {
  index: number;
  identity: number;
  name: string;
  responses: number;
  openedAt: number;
  /** A stream of the warm-latency sample (closed after its first response), not one of the long-lived ones. */
  warm?: boolean;
  last?: Buffer;
  req: http2.ClientHttp2Stream;
}

export async function main(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  const say = (event: object) => process.stdout.write(JSON.stringify(event) + '\n');
  const iter = lines[Symbol.asyncIterator]();
  const config = JSON.parse((await iter.next()).value as string) as { sdsDir: string; identities: Array<[string, string]>; perIdentity: number; trustDomain: string };
  // SDS_BENCH_SMALL_NODE=1: a node without extensions (about 300 bytes), to see what the 60 KB ones cost.
  const node = process.env.SDS_BENCH_SMALL_NODE ? Buffer.from(new Writer().bytes(1, 'sidecar~10.0.0.1~bench').bytes(2, '/bench').bytes(6, 'envoy').finish()) : envoyLikeNode('sidecar~10.0.0.1~bench', '/bench');
  process.stderr.write(`sds-clients: first request carries a ${node.length}-byte node\n`);
  const firstRequest = (name: string) => frame(new Writer().always(2, node).always(3, name).bytes(4, TYPE_URL).finish());
  const sessions: http2.ClientHttp2Session[] = [];
  const streams: Stream[] = [];
  let onResponse: ((s: Stream) => void) | undefined;

  const connect = (socketPath: string) =>
    new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath), settings: { initialWindowSize: ENVOY_WINDOW } });
      session.once('connect', () => {
        session.setLocalWindowSize(ENVOY_WINDOW);
        resolve(session);
      });
      session.once('error', reject);
    });

  const open = (session: http2.ClientHttp2Session, identity: number, name: string, onFirst?: (s: Stream) => void): Stream => {
    const req = session.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers' });
    const s: Stream = { index: streams.length, identity, name, responses: 0, openedAt: performance.now(), req };
    const reader = new MessageReader(64 * 1024 * 1024);
    req.on('data', (chunk: Buffer) => {
      for (const m of reader.push(chunk)) {
        const r = discoveryCodec.DiscoveryResponse.decode(m);
        s.responses++;
        s.last = r.resources[0]?.value;
        if (s.responses === 1) onFirst?.(s);
        if (!req.closed) req.write(frame(discoveryCodec.DiscoveryRequest.encode({ versionInfo: r.versionInfo, resourceNames: [name], typeUrl: TYPE_URL, responseNonce: r.nonce })));
        onResponse?.(s);
      }
    });
    req.on('error', () => undefined);
    req.write(firstRequest(name));
    return s;
  };

  for (;;) {
    const next = await iter.next();
    if (next.done) break;
    const [command, arg] = (next.value as string).split(' ');
    if (command === 'open') {
      const names = (ns: string, sa: string, k: number) => (k % 2 === 0 ? 'default' : `spiffe://${config.trustDomain}/ns/${ns}/sa/${sa}`);
      sessions.push(...(await Promise.all(config.identities.map(([ns, sa]) => connect(path.join(config.sdsDir, ns, sa, 'socket'))))));
      const connected = Date.now();
      let first = 0;
      const total = config.identities.length * config.perIdentity;
      await new Promise<void>((resolve) => {
        config.identities.forEach(([ns, sa], i) => {
          for (let k = 0; k < config.perIdentity; k++) streams.push(open(sessions[i], i, names(ns, sa, k), () => ++first === total && resolve()));
        });
      });
      say({ connected, firstAll: Date.now(), streams: streams.length });
    } else if (command === 'mark') {
      const marks = streams.map((s) => s.responses);
      let pending = streams.length;
      const updated = new Array<boolean>(streams.length).fill(false);
      let firstUpdate = 0;
      onResponse = (s) => {
        if (s.warm || s.index >= marks.length || updated[s.index] || s.responses <= marks[s.index]) return;
        updated[s.index] = true;
        firstUpdate ||= Date.now();
        if (--pending === 0) {
          onResponse = undefined;
          say({ updatedAll: Date.now(), firstUpdate });
        }
      };
      say({ marked: Date.now() });
    } else if (command === 'warm') {
      const n = Number(arg ?? 1000);
      const samples: number[] = [];
      for (let j = 0; j < n; j++) {
        const i = Math.floor(Math.random() * sessions.length);
        const [ns, sa] = config.identities[i];
        await new Promise<void>((resolve) => {
          const s = open(sessions[i], i, j % 2 ? 'default' : `spiffe://${config.trustDomain}/ns/${ns}/sa/${sa}`, (st) => {
            samples.push(performance.now() - st.openedAt);
            st.req.close(http2.constants.NGHTTP2_CANCEL);
            resolve();
          });
          s.warm = true;
        });
      }
      samples.sort((a, b) => a - b);
      const q = (p: number) => Number(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))].toFixed(2));
      say({ warm: { n, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: q(1) } });
    } else if (command === 'verify') {
      const Secret = envoyProtoRoot(SDS_PROTO_FILES).lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
      const problems: string[] = [];
      let verified = 0;
      const seen = new Set<number>();
      for (const s of streams) {
        if (seen.has(s.identity) || !s.last) continue;
        seen.add(s.identity);
        const secret = Secret.toObject(Secret.decode(s.last), { bytes: String }) as { name: string; tls_certificate?: { certificate_chain?: { inline_bytes?: string } } };
        const [ns, sa] = config.identities[s.identity];
        const want = `spiffe://${config.trustDomain}/ns/${ns}/sa/${sa}`;
        const pem = Buffer.from(secret.tls_certificate?.certificate_chain?.inline_bytes ?? '', 'base64');
        const san = pem.length ? new X509Certificate(pem).subjectAltName : undefined;
        if (san !== `URI:${want}`) problems.push(`${want}: got ${san ?? 'no certificate'} (secret ${secret.name})`);
        else verified++;
      }
      say({ verified, problems: problems.slice(0, 5) });
    }
  }
  for (const s of sessions) s.destroy();
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
