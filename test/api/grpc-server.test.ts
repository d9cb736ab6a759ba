/** The gRPC transport (src/api/grpc/server.ts) with @grpc/grpc-js as the client, over Unix sockets and TLS. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { method } from '../../src/api/ca-api';
import { GrpcError, GrpcServer, status } from '../../src/api/grpc/server';
import type { Codec } from '../../src/api/wire';
import { tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';

const text: Codec<string> = { encode: (s) => Buffer.from(s, 'utf8'), decode: (b) => b.toString('utf8') };
const Echo = {
  Unary: method('/test.Echo/Unary', text, text),
  Stream: method('/test.Echo/Stream', text, text, { response: true }),
  Chat: method('/test.Echo/Chat', text, text, { request: true, response: true }),
  Slow: method('/test.Echo/Slow', text, text),
  Watch: method('/test.Echo/Watch', text, text, { response: true }),
};

describe('GrpcServer over Unix sockets (plaintext HTTP/2)', () => {
  const dir = tempDir();
  const server = new GrpcServer({ maxMessageBytes: 1024 });
  const seenPaths: string[] = [];
  const signals: Array<{ early: boolean; late: boolean; reason?: string }> = [];
  let client: grpc.Client;
  let other: grpc.Client;
  before(async () => {
    server.unary(Echo.Unary, (req, ctx) => {
      seenPaths.push(ctx.localAddress);
      if (req === 'fail') throw new GrpcError(status.PERMISSION_DENIED, 'no, and a % sign');
      return `echo:${req}`;
    });
    server.serverStreaming(Echo.Stream, (req, _ctx, out) => {
      for (let i = 0; i < 3; i++) out.write(`${req}${i}`);
      out.end();
    });
    server.bidi(Echo.Chat, (call) => {
      call.onMessage((m) => (m === 'bye' ? call.end(new GrpcError(status.ABORTED, 'bye')) : call.write(`re:${m}`)));
    });
    server.unary(Echo.Slow, () => new Promise((resolve) => setTimeout(() => resolve('late'), 2000)));
    server.serverStreaming(Echo.Watch, (_req, ctx, out) => {
      const early = ctx.signal; // asked for while the call runs
      out.write('watching');
      out.onClose(() => setImmediate(() => signals.push({ early: early.aborted, late: ctx.signal.aborted, reason: (ctx.signal.reason as Error)?.message })));
    });
    await server.listenUnix(path.join(dir, 'a.sock'), 0o600);
    await server.listenUnix(path.join(dir, 'b.sock'));
    client = new grpc.Client(`unix:${path.join(dir, 'a.sock')}`, grpc.credentials.createInsecure());
    other = new grpc.Client(`unix:${path.join(dir, 'b.sock')}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    other.close();
    await server.close();
  });

  const unary = (c: grpc.Client, def: typeof Echo.Unary, req: string, opts: grpc.CallOptions = {}) =>
    new Promise<string>((resolve, reject) => c.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, opts, (err, res) => (err ? reject(err) : resolve(res!))));

  it('a call’s signal aborts when the call ends, whether the handler asked for it before or after', async () => {
    const call = client.makeServerStreamRequest(Echo.Watch.path, Echo.Watch.requestSerialize, Echo.Watch.responseDeserialize, 'x', {});
    await new Promise((resolve) => call.once('data', resolve));
    call.on('error', () => undefined);
    call.cancel();
    const deadline = Date.now() + 5000;
    while (signals.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(signals, [{ early: true, late: true, reason: 'the call ended' }]);
  });

  it('serves unary calls on each socket and tells the handler which socket the call came in on', async () => {
    assert.equal(await unary(client, Echo.Unary, 'hi'), 'echo:hi');
    assert.equal(await unary(other, Echo.Unary, 'ho'), 'echo:ho');
    assert.deepEqual(seenPaths, [path.join(dir, 'a.sock'), path.join(dir, 'b.sock')]);
    assert.equal(fs.statSync(path.join(dir, 'a.sock')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(dir, 'b.sock')).mode & 0o777, 0o666);
  });

  it('a refusal arrives with its code and the whole message', async () => {
    const err = await unary(client, Echo.Unary, 'fail').catch((e) => e);
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.equal(err.details, 'no, and a % sign');
  });

  it('server streaming and bidirectional streams deliver in order and end with the status given', async () => {
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = client.makeServerStreamRequest(Echo.Stream.path, Echo.Stream.requestSerialize, Echo.Stream.responseDeserialize, 'n', {});
      s.on('data', (m: string) => got.push(m));
      s.on('error', reject);
      s.on('end', resolve);
    });
    assert.deepEqual(got, ['n0', 'n1', 'n2']);
    const chat = client.makeBidiStreamRequest(Echo.Chat.path, Echo.Chat.requestSerialize, Echo.Chat.responseDeserialize, {});
    const replies: string[] = [];
    chat.on('data', (m: string) => replies.push(m));
    const ended = new Promise<grpc.ServiceError>((resolve) => chat.on('error', resolve));
    chat.write('a');
    chat.write('b');
    chat.write('bye');
    const err = await ended;
    assert.deepEqual(replies, ['re:a', 're:b']);
    assert.equal(err.code, status.ABORTED);
  });

  it('a message over the limit is RESOURCE_EXHAUSTED; an unknown method UNIMPLEMENTED; both leave the server serving', async () => {
    const big = await unary(client, Echo.Unary, 'x'.repeat(2000)).catch((e) => e);
    assert.equal(big.code, status.RESOURCE_EXHAUSTED);
    assert.match(big.details, /larger than max \(2000 vs\. 1024 bytes\)/);
    const unknown = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest('/test.Echo/Nope', text.encode, text.decode, 'x', {}, (err) => resolve(err!)),
    );
    assert.equal(unknown.code, status.UNIMPLEMENTED);
    assert.equal(await unary(client, Echo.Unary, 'still'), 'echo:still');
  });

  it('grpc-timeout is honoured: DEADLINE_EXCEEDED', async () => {
    const err = await unary(client, Echo.Slow, 'x', { deadline: Date.now() + 200 }).catch((e) => e);
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
  });

  it('a socket closed is gone from the file system and refuses calls', async () => {
    const s = new GrpcServer();
    const p = path.join(dir, 'c.sock');
    const l = await s.listenUnix(p);
    await l.close();
    assert.equal(fs.existsSync(p), false);
    await s.close();
  });
});

describe('GrpcServer idle connections', () => {
  const dir = tempDir();
  const server = new GrpcServer({ idleConnectionTimeoutMs: 300 });
  const sock = path.join(dir, 'idle.sock');
  before(async () => {
    server.bidi(Echo.Chat, (call) => call.onMessage((m) => call.write(`re:${m}`)));
    await server.listenUnix(sock);
  });
  after(() => server.close());

  const frame = (s: string) => {
    const body = Buffer.from(s);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };
  const connect = () => http2.connect('http://localhost', { createConnection: () => net.connect(sock) });

  it('a connection with no call is told to go away after the idle time; one with a quiet open stream (pinged, no data) is not', async () => {
    const empty = connect();
    const emptyGoaway = new Promise<number>((resolve) => empty.once('goaway', () => resolve(Date.now())));
    const quiet = connect();
    let quietGoaway = false;
    quiet.on('goaway', () => (quietGoaway = true));
    const stream = quiet.request({ ':method': 'POST', ':path': Echo.Chat.path, 'content-type': 'application/grpc', te: 'trailers' });
    const replies: string[] = [];
    stream.on('data', (d: Buffer) => replies.push(d.subarray(5).toString()));
    stream.write(frame('a'));
    // Keepalive PINGs, as Envoy sends on its xDS connection: not activity of a call.
    const pinger = setInterval(() => quiet.ping(() => undefined), 100);
    const started = Date.now();
    const at = await emptyGoaway;
    assert.ok(at - started >= 250, `the idle connection went away after ${at - started} ms, not before its 300 ms`);
    await new Promise((r) => setTimeout(r, 900));
    clearInterval(pinger);
    assert.equal(quietGoaway, false, 'a connection whose stream is open stays, however quiet');
    stream.write(frame('b'));
    await waitFor('the quiet stream to answer again', () => replies.includes('re:b'));
    assert.deepEqual(replies, ['re:a', 're:b']);
    // The stream ends: now the connection is idle, and goes away in its turn.
    const goaway = new Promise<void>((resolve) => quiet.once('goaway', () => resolve()));
    stream.end();
    stream.close();
    await goaway;
    empty.destroy();
    quiet.destroy();
  });
});
