/**
 * The CA's gRPC server against hostile input, spoken over real HTTP/2 + TLS connections whose
 * gRPC framing (and, where a library would refuse, HTTP/2 framing) is written here: a length
 * prefix claiming 2 GB, a truncated message, garbage protobuf, an unknown method, more streams
 * than the limit, streams that send nothing, connections that stall, deadlines. After each, the
 * server answers an ordinary caller, and nothing it held grew with what the attacker claimed.
 * Then the xDS port, which runs on the same transport with its own message limit: the same kinds
 * of input, a caller without a certificate, and `citadel server --max-concurrent-streams` on it.
 */
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { codec } from '../../src/api/ca-api';
import { discoveryCodec } from '../../src/api/discovery';
import { silentLogger } from '../../src/common/log';
import type { MeshSnapshot } from '../../src/mesh/model';
import { TYPE_URL } from '../../src/mesh/resources';
import { ServerCertificate } from '../../src/server/server-certificate';
import { XDS_MAX_MESSAGE_BYTES, XdsServer } from '../../src/server/xds-server';
import { endpoint, service, snapshotOf } from '../mesh/mesh-fixtures';
import { ADS, AdsClient, Changing, names, nodeOf } from '../helpers/ads-client';
import { startCitadelServer } from '../helpers/citadel-server';
import { bundleFor, testCa } from '../helpers/pki';
import { frame } from '../../src/api/grpc/framing';
import { CA_MAX_MESSAGE_BYTES } from '../../src/server/grpc-server';
import { FLAG, FRAME, H2_ERROR, RawH2Connection, SETTING } from '../helpers/h2-frames';
import { CaFixture, clientFor, credentialFor, csrFor, node, spiffeId, startCaFixture, workload } from './fixtures';

const CREATE = '/istio.v1.auth.IstioCertificateService/CreateCertificate';
const ATTEST = '/citadel.v1.NodeService/AttestNode';
const WATCH = '/citadel.v1.NodeService/WatchSecrets';
const MAX_STREAMS = 4;
const REQUEST_TIMEOUT_MS = 400;
const HANDSHAKE_TIMEOUT_MS = 400;

interface CallResult {
  grpcStatus?: number;
  grpcMessage?: string;
  /** RST_STREAM code the stream closed with (0 when it ended cleanly or with NO_ERROR). */
  rstCode: number;
  /** gRPC response bytes (length-prefixed messages). */
  body: Buffer;
  /** How many request bytes the client got to send before the stream closed. */
  sent: number;
}

/**
 * One gRPC call on a node:http2 session, its bytes chosen here: `send` writes what it likes
 * (awaiting `write` respects flow control) and the call ends with END_STREAM only if `end`.
 */
function rawCall(session: http2.ClientHttp2Session, path: string, send: (write: (b: Buffer) => Promise<boolean>) => Promise<void>, opts: { end?: boolean; headers?: http2.OutgoingHttpHeaders } = {}): Promise<CallResult> {
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...opts.headers }, { endStream: false });
  req.on('error', () => undefined);
  const result: CallResult = { rstCode: 0, body: Buffer.alloc(0), sent: 0 };
  const chunks: Buffer[] = [];
  const take = (h: http2.IncomingHttpHeaders) => {
    if (h['grpc-status'] !== undefined) result.grpcStatus = Number(h['grpc-status']);
    if (h['grpc-message'] !== undefined) result.grpcMessage = decodeURIComponent(String(h['grpc-message']));
  };
  req.on('response', take);
  req.on('trailers', take);
  req.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((resolve) => req.once('close', () => resolve()));
  const write = (b: Buffer) =>
    new Promise<boolean>((resolve) => {
      if (req.destroyed || req.closed) return resolve(false);
      const ok = req.write(b, (err) => {
        if (!err) result.sent += b.length;
      });
      if (ok) return resolve(true);
      const done = () => {
        req.off('drain', done);
        req.off('close', done);
        resolve(!req.destroyed && !req.closed);
      };
      req.once('drain', done);
      req.once('close', done);
    });
  return (async () => {
    await send(write);
    if (opts.end && !req.closed) req.end();
    await closed;
    result.rstCode = req.rstCode ?? 0;
    result.body = Buffer.concat(chunks);
    return result;
  })();
}

/**
 * The largest Buffer the process asked for while `fn` ran (Buffer.alloc, allocUnsafe,
 * allocUnsafeSlow, concat, from): the server runs in this process, so a server that allocated
 * the size a length prefix claims shows here.
 */
async function largestAllocation(fn: () => Promise<void>): Promise<number> {
  let largest = 0;
  const B = Buffer as unknown as Record<string, (...a: unknown[]) => Buffer>;
  const saved: Record<string, (...a: unknown[]) => Buffer> = {};
  for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow', 'concat', 'from']) {
    saved[name] = B[name];
    B[name] = function (this: unknown, ...args: unknown[]) {
      if (typeof args[0] === 'number') largest = Math.max(largest, args[0]);
      const out = saved[name].apply(Buffer, args);
      largest = Math.max(largest, out.length);
      return out;
    };
  }
  try {
    await fn();
  } finally {
    for (const name of Object.keys(saved)) B[name] = saved[name];
  }
  return largest;
}

describe('the CA gRPC server under hostile input', () => {
  let f: CaFixture;
  let session: http2.ClientHttp2Session;
  before(async () => {
    f = await startCaFixture({ maxConcurrentStreams: MAX_STREAMS, timeouts: { requestTimeoutMs: REQUEST_TIMEOUT_MS, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS } });
    session = connect();
    session.on('error', () => undefined);
  });
  after(async () => {
    session.destroy();
    await f.close();
  });

  const me = workload('prod', 'api');
  function connect(cred = credentialFor(f.ca, me)): http2.ClientHttp2Session {
    return http2.connect(`https://127.0.0.1:${f.server.port}`, { ca: f.ca.rootCertPem, key: cred.keyPem, cert: cred.certChainPem, servername: 'istio-ca' });
  }

  /** An ordinary caller (grpc-js) is answered: the server survived whatever came before. */
  async function answersOthers(): Promise<void> {
    const client = clientFor(f, credentialFor(f.ca, workload('prod', 'bystander')));
    try {
      const chain = await client.createCertificate(csrFor(spiffeId(workload('prod', 'bystander'))).csr);
      assert.equal(chain.length, 2);
    } finally {
      client.close();
    }
  }

  const csrMessage = () => frame(codec.IstioCertificateRequest.encode({ csr: csrFor(spiffeId(me)).csr }));

  it('a well-formed call over the raw connection is answered (the baseline for the cases below)', async () => {
    const r = await rawCall(session, CREATE, async (write) => void (await write(csrMessage())), { end: true });
    assert.equal(r.grpcStatus, status.OK);
    assert.ok(r.body.length > 5);
    assert.deepEqual(codec.IstioCertificateResponse.decode(r.body.subarray(5)).certChain.length, 2);
  });

  it('a 2 GB length prefix is RESOURCE_EXHAUSTED, the stream is reset, and nothing of that size is allocated', async () => {
    let r: CallResult | undefined;
    const junk = Buffer.alloc(16 * 1024, 0x41);
    const largest = await largestAllocation(async () => {
      r = await rawCall(session, CREATE, async (write) => {
        const prefix = Buffer.from([0, 0x80, 0, 0, 0]); // 2^31 bytes
        if (!(await write(prefix))) return;
        // Then keep sending, as if the 2 GB were coming: up to 32 MB, until the server stops us.
        for (let i = 0; i < 2048; i++) if (!(await write(junk))) return;
      });
    });
    assert.equal(r!.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(r!.grpcMessage, `received message larger than max (2147483648 vs. ${CA_MAX_MESSAGE_BYTES} bytes)`);
    assert.equal(r!.rstCode, H2_ERROR.NO_ERROR, 'reset with NO_ERROR after the status, as grpc-go does');
    assert.ok(r!.sent < 32 * 1024 * 1024, `the client was stopped before sending all it meant to (sent ${r!.sent})`);
    assert.ok(largest < 1024 * 1024, `the largest buffer allocated meanwhile was ${largest} bytes`);
    await answersOthers();
  });

  it('a message one byte over the limit is RESOURCE_EXHAUSTED; one at the limit is read (and refused by the CA as a CSR)', async () => {
    const over = await rawCall(session, CREATE, async (write) => {
      const b = Buffer.alloc(5);
      b.writeUInt32BE(CA_MAX_MESSAGE_BYTES + 1, 1);
      await write(b);
    });
    assert.equal(over.grpcStatus, status.RESOURCE_EXHAUSTED);
    const csr = 'x'.repeat(CA_MAX_MESSAGE_BYTES - 4); // field 1, length as a 3-byte varint: CA_MAX_MESSAGE_BYTES in all
    const at = codec.IstioCertificateRequest.encode({ csr });
    assert.equal(at.length, CA_MAX_MESSAGE_BYTES);
    const r = await rawCall(session, CREATE, async (write) => void (await write(frame(at))), { end: true });
    assert.equal(r.grpcStatus, status.INVALID_ARGUMENT);
    await answersOthers();
  });

  it('a truncated message (the stream ends inside it) is INTERNAL', async () => {
    const r = await rawCall(
      session,
      CREATE,
      async (write) => {
        const whole = csrMessage();
        await write(whole.subarray(0, whole.length - 100));
      },
      { end: true },
    );
    assert.equal(r.grpcStatus, status.INTERNAL);
    assert.match(r.grpcMessage ?? '', /truncated/);
    const empty = await rawCall(session, CREATE, async () => {}, { end: true });
    assert.equal(empty.grpcStatus, status.INTERNAL);
    assert.match(empty.grpcMessage ?? '', /got none/);
    await answersOthers();
  });

  it('garbage protobuf is INTERNAL, whichever way it is broken', async () => {
    const garbage = [
      Buffer.from([0x0a, 0x7f, 0x41]), // field 1, length 127, 1 byte follows
      Buffer.from([0x0f]), // wire type 7
      Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // a varint of 11 bytes
      Buffer.from([0x00, 0x01]), // field number 0
      Buffer.from([0x0a, 0xf5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // a negative length
    ];
    for (const g of garbage) {
      const r = await rawCall(session, CREATE, async (write) => void (await write(frame(g))), { end: true });
      assert.equal(r.grpcStatus, status.INTERNAL, g.toString('hex'));
      assert.match(r.grpcMessage ?? '', /cannot parse the request/, g.toString('hex'));
    }
    // A compressed-flag message, and a flag byte that is neither 0 nor 1.
    const compressed = await rawCall(session, CREATE, async (write) => void (await write(Buffer.from([1, 0, 0, 0, 1, 0]))), { end: true });
    assert.equal(compressed.grpcStatus, status.UNIMPLEMENTED);
    const badFlag = await rawCall(session, CREATE, async (write) => void (await write(Buffer.from([7, 0, 0, 0, 1, 0]))), { end: true });
    assert.equal(badFlag.grpcStatus, status.INTERNAL);
    await answersOthers();
  });

  it('an unknown method is UNIMPLEMENTED; a non-gRPC request gets HTTP 415', async () => {
    const r = await rawCall(session, '/istio.v1.auth.Nope/Nope', async (write) => void (await write(csrMessage())), { end: true });
    assert.equal(r.grpcStatus, status.UNIMPLEMENTED);
    assert.match(r.grpcMessage ?? '', /unknown method \/istio\.v1\.auth\.Nope\/Nope/);
    const plain = session.request({ ':method': 'GET', ':path': CREATE });
    const code = await new Promise<number>((resolve) => plain.on('response', (h) => resolve(Number(h[':status']))));
    plain.close();
    assert.equal(code, 415);
    await answersOthers();
  });

  it('a unary call followed by megabytes more is answered after its one message; the rest is dropped, not held', async () => {
    let r: CallResult | undefined;
    const junk = Buffer.alloc(16 * 1024, 0x42);
    const largest = await largestAllocation(async () => {
      r = await rawCall(session, CREATE, async (write) => {
        if (!(await write(csrMessage()))) return;
        for (let i = 0; i < 512; i++) if (!(await write(junk))) return;
      });
    });
    assert.equal(r!.grpcStatus, status.OK);
    assert.equal(codec.IstioCertificateResponse.decode(r!.body.subarray(5)).certChain.length, 2);
    assert.ok(largest < 1024 * 1024, `the largest buffer allocated meanwhile was ${largest} bytes`);
    await answersOthers();
  });

  it('grpc-timeout is honoured (DEADLINE_EXCEEDED); a malformed one is INTERNAL; an enormous one is no deadline at all', async () => {
    // A request that never completes, with a deadline shorter than the server's own request timeout.
    const unary = await rawCall(session, CREATE, async (write) => void (await write(csrMessage().subarray(0, 20))), { headers: { 'grpc-timeout': '100m' } });
    assert.equal(unary.grpcStatus, status.DEADLINE_EXCEEDED);
    assert.match(unary.grpcMessage ?? '', /deadline of 100m exceeded/);
    // A node's feed, which would otherwise stay open while its certificate is valid.
    const nodeSession = connect(credentialFor(f.ca, node('agent-9')));
    nodeSession.on('error', () => undefined);
    try {
      const feed = await rawCall(nodeSession, WATCH, async (write) => void (await write(frame(Buffer.alloc(0)))), { end: true, headers: { 'grpc-timeout': '300m' } });
      assert.equal(feed.grpcStatus, status.DEADLINE_EXCEEDED);
      assert.ok(feed.body.length > 5, 'the feed sent its snapshot before the deadline ended it');
    } finally {
      nodeSession.destroy();
    }
    const malformed = await rawCall(session, CREATE, async (write) => void (await write(csrMessage())), { end: true, headers: { 'grpc-timeout': '5 seconds' } });
    assert.equal(malformed.grpcStatus, status.INTERNAL);
    assert.match(malformed.grpcMessage ?? '', /malformed grpc-timeout/);
    // 99999999 hours overflows a timer (which Node would then fire at once): it must mean no deadline.
    const enormous = await rawCall(session, CREATE, async (write) => void (await write(csrMessage())), { end: true, headers: { 'grpc-timeout': '99999999H' } });
    assert.equal(enormous.grpcStatus, status.OK);
    await answersOthers();
  });

  it('streams that send nothing are cut off after the request timeout (DEADLINE_EXCEEDED), each of them', async () => {
    const calls = [0, 1, 2].map(() => rawCall(session, ATTEST, async () => {}));
    for (const r of await Promise.all(calls)) {
      assert.equal(r.grpcStatus, status.DEADLINE_EXCEEDED);
      assert.match(r.grpcMessage ?? '', new RegExp(`no request within ${REQUEST_TIMEOUT_MS} ms`));
    }
    await answersOthers();
  });

  it(`more concurrent streams than the limit (${MAX_STREAMS}): the limit is advertised, and a client that ignores it is cut off, not served`, async () => {
    const c = await RawH2Connection.connect(f.server.port, { ca: f.ca.rootCertPem });
    try {
      await assertExcessStreamsRefused(c, ATTEST);
    } finally {
      c.close();
    }
    await answersOthers();
  });

  it('a connection that completes TLS but never sends the HTTP/2 preface is closed after the handshake timeout', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: f.server.port, ca: f.ca.rootCertPem, servername: 'istio-ca', ALPNProtocols: ['h2'] });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    await closedWithin(socket, 10_000);
    await answersOthers();
  });

  it('a client that stalls the TLS handshake is cut off after the handshake timeout, mid-ClientHello or silent', async () => {
    const silent = net.connect(f.server.port, '127.0.0.1');
    const partial = net.connect(f.server.port, '127.0.0.1');
    for (const s of [silent, partial]) s.on('error', () => undefined);
    await Promise.all([silent, partial].map((s) => new Promise<void>((resolve) => s.once('connect', () => resolve()))));
    partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])); // a ClientHello's first bytes, of 512
    await Promise.all([closedWithin(silent, 10_000), closedWithin(partial, 10_000)]);
    await answersOthers();
  });
});

describe('the xDS gRPC server (--xds-port) under hostile input', () => {
  let f: CaFixture;
  let xds: XdsServer;
  let port: number;
  let session: http2.ClientHttp2Session;
  const api = service({ marathonId: '/prod/api', serviceAccount: 'api', endpoints: [endpoint('10.1.0.2', [8080])] });
  const web = service({ marathonId: '/web/front', serviceAccount: 'front', upstreams: [{ service: '/prod/api', localPort: 15080 }] });
  const mesh = new Changing<MeshSnapshot>(snapshotOf([api, web]));
  const me = workload('web', 'front');
  before(async () => {
    f = await startCaFixture();
    xds = new XdsServer({
      trustDomain: 'cluster.local',
      serverCertificate: new ServerCertificate(f.ca, [], silentLogger),
      placements: f.view,
      mesh: { current: () => mesh.value, onChange: (l) => mesh.onChange(l) },
      policies: { current: () => [], onChange: () => () => undefined },
      port: 0,
      host: '127.0.0.1',
      logger: silentLogger,
      registry: new Registry(),
      quietMs: 20,
      maxConcurrentStreams: MAX_STREAMS,
      timeouts: { requestTimeoutMs: REQUEST_TIMEOUT_MS, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
    });
    port = await xds.start();
    session = connect();
    session.on('error', () => undefined);
  });
  after(async () => {
    session.destroy();
    await xds.close();
    await f.close();
  });

  /** A connection with the sidecar's certificate, or with none (`null`). */
  function connect(cred: { keyPem: string; certChainPem: string } | null = credentialFor(f.ca, me)): http2.ClientHttp2Session {
    return http2.connect(`https://127.0.0.1:${port}`, { ca: f.ca.rootCertPem, ...(cred && { key: cred.keyPem, cert: cred.certChainPem }), servername: 'istiod' });
  }

  /** A sidecar speaking ADS with grpc-js gets its clusters: the server survived whatever came before. */
  async function servesOthers(): Promise<void> {
    const c = new AdsClient(`127.0.0.1:${port}`, f.ca.rootCertPem, credentialFor(f.ca, me));
    try {
      c.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front') });
      const cds = await c.next();
      assert.ok(names(cds, 'envoy.config.cluster.v3.Cluster').includes('outbound|8080||api-prod.marathon.mesos'));
    } finally {
      c.close();
    }
  }

  const cdsRequest = () => frame(discoveryCodec.DiscoveryRequest.encode({ versionInfo: '', resourceNames: [], typeUrl: TYPE_URL.cluster, responseNonce: '', node: nodeOf('/web/front') }));

  it('a well-formed ADS request over the raw connection is answered with clusters (the baseline)', async () => {
    const r = await rawCall(session, ADS.path, async (write) => {
      await write(cdsRequest());
      await new Promise((resolve) => setTimeout(resolve, 200)); // the stream stays open, as Envoy's does; the answer comes meanwhile
    }, { end: true });
    assert.ok(r.body.length > 5, `an answer: ${JSON.stringify({ ...r, body: r.body.length })}`);
    assert.equal(discoveryCodec.DiscoveryResponse.decode(r.body.subarray(5, 5 + r.body.readUInt32BE(1))).typeUrl, TYPE_URL.cluster);
  });

  it('a 2 GB length prefix is RESOURCE_EXHAUSTED at the xDS limit, the stream is reset, and nothing of that size is allocated', async () => {
    let r: CallResult | undefined;
    const junk = Buffer.alloc(16 * 1024, 0x41);
    const largest = await largestAllocation(async () => {
      r = await rawCall(session, ADS.path, async (write) => {
        if (!(await write(Buffer.from([0, 0x80, 0, 0, 0])))) return;
        for (let i = 0; i < 2048; i++) if (!(await write(junk))) return;
      });
    });
    assert.equal(r!.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(r!.grpcMessage, `received message larger than max (2147483648 vs. ${XDS_MAX_MESSAGE_BYTES} bytes)`);
    assert.ok(r!.sent < 32 * 1024 * 1024, `the client was stopped before sending all it meant to (sent ${r!.sent})`);
    assert.ok(largest < XDS_MAX_MESSAGE_BYTES, `the largest buffer allocated meanwhile was ${largest} bytes`);
    const over = await rawCall(session, ADS.path, async (write) => {
      const b = Buffer.alloc(5);
      b.writeUInt32BE(XDS_MAX_MESSAGE_BYTES + 1, 1);
      await write(b);
    });
    assert.equal(over.grpcStatus, status.RESOURCE_EXHAUSTED, 'one byte over the limit');
    await servesOthers();
  });

  it('garbage protobuf in a gRPC frame ends the stream with an error and no configuration; garbage instead of HTTP/2 loses the connection', async () => {
    for (const g of [Buffer.from([0x0a, 0x7f, 0x41]), Buffer.from([0x0f]), Buffer.from([0x00, 0x01])]) {
      const r = await rawCall(session, ADS.path, async (write) => void (await write(frame(g))), { end: true });
      assert.ok(r.grpcStatus === status.INTERNAL || r.grpcStatus === status.INVALID_ARGUMENT, `${g.toString('hex')}: ${r.grpcStatus} ${r.grpcMessage}`);
      assert.equal(r.body.length, 0, 'no DiscoveryResponse');
    }
    const cred = credentialFor(f.ca, me);
    const socket = tls.connect({ host: '127.0.0.1', port, ca: f.ca.rootCertPem, servername: 'istiod', ALPNProtocols: ['h2'], key: cred.keyPem, cert: cred.certChainPem });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    socket.write(Buffer.alloc(64, 0xee)); // not the HTTP/2 connection preface
    await closedWithin(socket, 10_000);
    await servesOthers();
  });

  it('a caller without a certificate, or with another root’s, is refused UNAUTHENTICATED and gets no configuration', async () => {
    const anonymous = connect(null);
    anonymous.on('error', () => undefined);
    try {
      const r = await rawCall(anonymous, ADS.path, async (write) => void (await write(cdsRequest())), { end: true });
      assert.equal(r.grpcStatus, status.UNAUTHENTICATED, JSON.stringify({ ...r, body: r.body.toString("hex").slice(0, 200) }));
      assert.equal(r.body.length, 0);
    } finally {
      anonymous.destroy();
    }
    const foreign = bundleFor(testCa(), 'web', 'front');
    const c = new AdsClient(`127.0.0.1:${port}`, f.ca.rootCertPem, foreign);
    try {
      c.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front') });
      const ended = await c.ended;
      assert.equal(ended.code, status.UNAUTHENTICATED, ended.details);
      assert.equal(c.pending, 0, 'no configuration');
    } finally {
      c.close();
    }
    await servesOthers();
  });

  it('a stream that never sends its first request is cut off after the request timeout it was given', async () => {
    const r = await rawCall(session, ADS.path, async () => {});
    assert.equal(r.grpcStatus, status.DEADLINE_EXCEEDED);
    assert.match(r.grpcMessage ?? '', new RegExp(`no request within ${REQUEST_TIMEOUT_MS} ms`));
    await servesOthers();
  });

  it(`more concurrent streams than the limit it was given (${MAX_STREAMS}): advertised, and a client that ignores it is cut off, not served`, async () => {
    const cred = credentialFor(f.ca, me);
    const c = await RawH2Connection.connect(port, { ca: f.ca.rootCertPem, key: cred.keyPem, cert: cred.certChainPem, servername: 'istiod' });
    try {
      await assertExcessStreamsRefused(c, ADS.path);
    } finally {
      c.close();
    }
    await servesOthers();
  });

  it('citadel server --max-concurrent-streams reaches the xDS port: its SETTINGS advertise the flag’s value', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'citadel-xds-limits-'));
    const server = await startCitadelServer(['--marathon', 'http://127.0.0.1:9', '--store', `file:${dir}/data`, '--max-concurrent-streams', '7'], { waitFor: (l) => l.msg === 'xDS listening' });
    try {
      const root = readFileSync(path.join(dir, 'data', 'ca', 'istio-ca-secret', 'ca-cert.pem'), 'utf8');
      for (const p of [server.xdsPort, server.grpcPort]) {
        const c = await RawH2Connection.connect(p, { ca: root, servername: 'istiod' });
        try {
          assert.equal(c.serverSettings.get(SETTING.MAX_CONCURRENT_STREAMS), 7, `port ${p}`);
        } finally {
          c.close();
        }
      }
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Resolves when the server closes `socket` (it never sends anything to end it ourselves); fails after `ms`. */
function closedWithin(socket: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${ms} ms`));
    }, ms);
    socket.resume();
    socket.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Opens two streams more than the advertised limit: the excess is refused (or the connection lost), never answered. */
async function assertExcessStreamsRefused(c: RawH2Connection, streamPath: string): Promise<void> {
  assert.equal(c.serverSettings.get(SETTING.MAX_CONCURRENT_STREAMS), MAX_STREAMS);
  // Let the server see our SETTINGS acknowledgement first: then it enforces its limit in full.
  await c.waitFor('the SETTINGS ack', () => c.frames.some((fr) => fr.type === FRAME.SETTINGS && fr.flags & FLAG.ACK));
  const ids = Array.from({ length: MAX_STREAMS + 2 }, () => c.openStream(streamPath));
  const excess = ids.slice(MAX_STREAMS);
  await c.waitFor('the server to refuse the excess streams', () => c.isClosed || excess.every((id) => c.rstCode(id) !== undefined));
  if (c.isClosed) {
    // Node's HTTP/2 (nghttp2) treats exceeding an acknowledged limit as a connection error
    // (grpc-go refuses the stream instead): the rule-breaker loses its connection.
    const goaway = c.goaway();
    if (goaway) assert.equal(goaway.code, H2_ERROR.PROTOCOL_ERROR);
  } else {
    for (const id of excess) assert.ok([H2_ERROR.REFUSED_STREAM, H2_ERROR.PROTOCOL_ERROR].includes(c.rstCode(id) as 7 | 1), `stream ${id}: ${c.rstCode(id)}`);
  }
  assert.ok(excess.every((id) => !c.endedByServer(id)), 'no stream beyond the limit was answered');
}
