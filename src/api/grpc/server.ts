/**
 * gRPC over HTTP/2, server side, on node:http2 directly: unary, server-streaming and
 * bidirectional methods, over TLS (the CA, xDS) or plaintext on Unix sockets (the node agent's
 * SDS and xDS sockets), identity encoding only. One layer for every server of the project.
 *
 * Why not @grpc/grpc-js's Server: the CA's calls are small and CPU-bound, and a general gRPC
 * server (interceptor chains, metadata objects, per-call timers, channelz) costs more per call
 * than the work they do (measured: about a fifth of the server's CPU per certificate); an SDS
 * agent holds ten thousand streams, and a stream here is a few closures. This is the part of the
 * protocol those services need (grpc/grpc PROTOCOL-HTTP2.md): length-prefixed messages,
 * `grpc-status`/`grpc-message` trailers, trailers-only errors, `grpc-timeout`.
 */
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { MethodDefinition } from '@grpc/grpc-js';
import type { FieldPlan } from '../field-sieve';
import { frame, MessageReader } from './framing';
import { encodeGrpcMessage, GrpcError, parseGrpcTimeout, status } from './status';

export { GrpcError, status };

export interface CallContext {
  /** The HTTP/2 connection: its peer is the same for every call on it. */
  session: http2.ServerHttp2Session;
  /** The TLS connection of a TLS server, for the peer's certificate; undefined on plaintext sockets. */
  tls?: TLSSocket;
  /** The remote address (TCP), for rate limiting unauthenticated callers; '' on Unix sockets. */
  peerAddress: string;
  /** Where the call came in: the Unix socket path, or `host:port` of the listener. */
  localAddress: string;
  /** Request headers (custom metadata included). */
  metadata: http2.IncomingHttpHeaders;
  /** Aborted when the call ends for any reason (finished, cancelled, deadline, shutdown). */
  signal: AbortSignal;
}

/** The sending half of a streaming call. */
export interface ServerStream<Res> {
  /** False once the peer's window is full (the message is still queued). */
  write(message: Res): boolean;
  /** Ends the call with a status (OK when omitted). */
  end(error?: GrpcError): void;
  onClose(listener: () => void): void;
  readonly closed: boolean;
}

/** A bidirectional call: messages in order as they arrive, and the sending half. */
export interface BidiCall<Req, Res> extends ServerStream<Res> {
  readonly ctx: CallContext;
  onMessage(listener: (message: Req) => void): void;
  /** The client half-closed its side (sends nothing more). */
  onEnd(listener: () => void): void;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Res | Promise<Res>;
export type ServerStreamingHandler<Req, Res> = (request: Req, ctx: CallContext, out: ServerStream<Res>) => void;
export type BidiHandler<Req, Res> = (call: BidiCall<Req, Res>) => void;

/** A method as grpc-js describes it and, optionally, the request fields its handler reads (large requests are then never held whole). */
export type GrpcMethodDefinition<Req, Res> = MethodDefinition<Req, Res> & { requestFieldPlan?: FieldPlan };

interface Route {
  requestFieldPlan?: FieldPlan;
  deserialize(b: Buffer): unknown;
  serialize(m: unknown): Buffer;
  unary?: UnaryHandler<unknown, unknown>;
  streaming?: ServerStreamingHandler<unknown, unknown>;
  bidi?: BidiHandler<unknown, unknown>;
}

export interface GrpcServerOptions {
  /** TLS: our certificate and key; `ca` verifies client certificates, which are asked for but optional. Absent: plaintext HTTP/2 (Unix sockets). */
  tls?: SecureContextOptions;
  /** Largest message accepted (default 4 MiB, as grpc-go). */
  maxMessageBytes?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (default 1000). */
  maxConcurrentStreams?: number;
  /** A call whose request (the first message, for streams) has not arrived by then is cut off (default 30 s). */
  requestTimeoutMs?: number;
  /** A TLS handshake, or an HTTP/2 connection preface after it, not finished by then is cut off (default 10 s). */
  handshakeTimeoutMs?: number;
  /** A connection with no open call for this long is closed with GOAWAY (default 5 min); an open stream, however quiet, keeps it. */
  idleConnectionTimeoutMs?: number;
  onError?: (err: Error, path: string) => void;
}

const GRPC_CONTENT_TYPE = 'application/grpc';
const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH, HTTP2_HEADER_METHOD } = http2.constants;
/** The Unix path a plaintext connection came in on, set on its socket (a session's `socket` is a proxy that passes this through). */
const UNIX_PATH = Symbol('citadel.unixPath');
type TaggedSocket = { [UNIX_PATH]?: string };

/** The reason a call's signal is aborted with (a made-up reason spares a DOMException per call). */
const CALL_ENDED = new Error('the call ended');

const RESPONSE_HEADERS = { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: GRPC_CONTENT_TYPE };

/** A Unix socket being served. */
export interface UnixListener {
  readonly path: string;
  close(): Promise<void>;
}

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly server: http2.Http2SecureServer | http2.Http2Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly unixListeners = new Set<net.Server>();
  private readonly maxMessageBytes: number;
  private readonly requestTimeoutMs: number;
  private closing = false;

  constructor(private readonly opts: GrpcServerOptions = {}) {
    this.maxMessageBytes = opts.maxMessageBytes ?? 4 * 1024 * 1024;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    const settings = { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 };
    this.server = opts.tls
      ? http2.createSecureServer({
          ...opts.tls,
          requestCert: true,
          rejectUnauthorized: false, // AttestNode is called before the node has a certificate; handlers check `authorized`
          ALPNProtocols: ['h2'],
          settings,
          handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
        })
      : http2.createServer({ settings });
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      // A client that connects and never sends HTTP/2's preface and SETTINGS holds a socket: cut it off.
      const preface = setTimeout(() => session.destroy(), opts.handshakeTimeoutMs ?? 10_000);
      preface.unref();
      session.once('remoteSettings', () => clearTimeout(preface));
      session.once('close', () => clearTimeout(preface));
      this.closeWhenIdle(session, opts.idleConnectionTimeoutMs ?? 300_000);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', () => undefined);
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.server.on('tlsClientError', () => undefined);
    this.server.on('sessionError', () => undefined);
  }

  /**
   * Closes (GOAWAY) a connection that has had no open call for `idleMs`. Not HTTP/2's own
   * session.setTimeout, which counts bytes: a watch that is quiet for minutes (an ADS or SDS stream
   * in a calm mesh, whose keepalive PINGs it does not count) would be told to go away.
   */
  private closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => session.close(), idleMs);
      timer.unref();
    };
    arm();
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(timer);
      stream.once('close', () => {
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once('close', () => clearTimeout(timer));
  }

  unary<Req, Res>(def: MethodDefinition<Req, Res>, handler: UnaryHandler<Req, Res>): void {
    this.route(def, { unary: handler as UnaryHandler<unknown, unknown> });
  }

  serverStreaming<Req, Res>(def: MethodDefinition<Req, Res>, handler: ServerStreamingHandler<Req, Res>): void {
    this.route(def, { streaming: handler as ServerStreamingHandler<unknown, unknown> });
  }

  bidi<Req, Res>(def: MethodDefinition<Req, Res>, handler: BidiHandler<Req, Res>): void {
    this.route(def, { bidi: handler as BidiHandler<unknown, unknown> });
  }

  private route<Req, Res>(def: MethodDefinition<Req, Res>, handlers: Partial<Route>): void {
    this.routes.set(def.path, {
      requestFieldPlan: (def as GrpcMethodDefinition<Req, Res>).requestFieldPlan,
      deserialize: def.requestDeserialize as (b: Buffer) => unknown,
      serialize: def.responseSerialize as (m: unknown) => Buffer,
      ...handlers,
    });
  }

  /** New certificate and key for new connections (existing ones keep theirs). */
  setSecureContext(tls: SecureContextOptions): void {
    if (!('setSecureContext' in this.server)) throw new Error('a plaintext gRPC server has no TLS context');
    this.server.setSecureContext(tls);
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Serves plaintext gRPC on a Unix socket: a stale socket file is removed first, the socket gets
   * `mode`. Calls carry the path as `ctx.localAddress`, so one server serves many sockets and a
   * handler tells them apart (the node agent's path is the caller's authorization).
   */
  async listenUnix(socketPath: string, mode = 0o666): Promise<UnixListener> {
    if (this.opts.tls) throw new Error('Unix sockets are served in plaintext; make a GrpcServer without tls');
    fs.rmSync(socketPath, { force: true });
    const listener = net.createServer((socket) => {
      (socket as TaggedSocket)[UNIX_PATH] = socketPath;
      this.server.emit('connection', socket);
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(socketPath, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(socketPath, mode);
    this.unixListeners.add(listener);
    return {
      path: socketPath,
      close: () =>
        new Promise<void>((resolve) => {
          this.unixListeners.delete(listener);
          listener.close(() => resolve());
          for (const s of this.sessions) if ((s.socket as TaggedSocket | undefined)?.[UNIX_PATH] === socketPath) s.destroy();
          fs.rmSync(socketPath, { force: true });
        }),
    };
  }

  /** Stops accepting connections; closes existing ones once their calls end, or after `graceMs`. */
  close(graceMs = 2000): Promise<void> {
    this.closing = true;
    const listeners = [...this.unixListeners].map((l) => new Promise<void>((resolve) => l.close(() => resolve())));
    this.unixListeners.clear();
    return new Promise((resolve) => {
      const force = setTimeout(() => {
        for (const s of this.sessions) s.destroy();
      }, graceMs);
      force.unref();
      const done = () => {
        clearTimeout(force);
        Promise.all(listeners).then(() => resolve());
      };
      if (this.server.listening) this.server.close(done);
      else {
        for (const s of this.sessions) s.destroy();
        done();
      }
      for (const s of this.sessions) s.close();
    });
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const path = headers[HTTP2_HEADER_PATH] as string;
    const contentType = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (headers[HTTP2_HEADER_METHOD] !== 'POST' || typeof contentType !== 'string' || !contentType.startsWith(GRPC_CONTENT_TYPE)) {
      stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
      return stopReading(stream);
    }
    if (this.closing) return trailersOnly(stream, status.UNAVAILABLE, 'the server is shutting down; retry');
    const route = this.routes.get(path);
    if (!route) return trailersOnly(stream, status.UNIMPLEMENTED, `unknown method ${path}`);
    const enc = headers['grpc-encoding'];
    if (enc !== undefined && enc !== 'identity') return trailersOnly(stream, status.UNIMPLEMENTED, `grpc-encoding ${enc} is not supported; send uncompressed messages`);
    const timeoutHeader = headers['grpc-timeout'];
    const timeoutMs = parseGrpcTimeout(timeoutHeader);
    if (timeoutHeader !== undefined && timeoutMs === undefined) return trailersOnly(stream, status.INTERNAL, `malformed grpc-timeout ${String(timeoutHeader)}`);

    const session = stream.session as http2.ServerHttp2Session;
    const socket = session.socket;
    // The signal is made only for a handler that asks: an AbortController per call, and the
    // DOMException its abort() makes, cost about 12 µs a call (profiled), and an SDS stream never asks.
    let abort: AbortController | undefined;
    let ended = false;
    const ctx: CallContext = {
      session,
      tls: this.opts.tls ? (socket as TLSSocket) : undefined,
      peerAddress: socket.remoteAddress ?? '',
      localAddress: (socket as TaggedSocket)[UNIX_PATH] ?? `${socket.localAddress}:${socket.localPort}`,
      metadata: headers,
      get signal() {
        abort ??= new AbortController();
        if (ended) abort.abort(CALL_ENDED);
        return abort.signal;
      },
    };
    stream.once('close', () => {
      ended = true;
      abort?.abort(CALL_ENDED);
    });

    // Beyond setTimeout's range (about 24.8 days) a deadline never fires in practice: no timer.
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
      const deadline = setTimeout(() => trailersOrEnd(stream, status.DEADLINE_EXCEEDED, `deadline of ${String(timeoutHeader)} exceeded`), timeoutMs);
      deadline.unref();
      stream.once('close', () => clearTimeout(deadline));
    }
    // A caller that opens a call and never sends its request holds a stream: cut it off.
    const waiting = setTimeout(() => trailersOrEnd(stream, status.DEADLINE_EXCEEDED, `no request within ${this.requestTimeoutMs} ms`), this.requestTimeoutMs);
    waiting.unref();
    stream.once('close', () => clearTimeout(waiting));

    const reader = new MessageReader(this.maxMessageBytes, route.requestFieldPlan);
    if (route.bidi) return this.runBidi(stream, route, ctx, reader, () => clearTimeout(waiting));

    // Unary and server-streaming calls take one message and act on it as soon as it is whole, as
    // grpc-go does; whatever the client sends after it is read and dropped, never held.
    let request: Buffer | undefined;
    stream.on('data', (chunk: Buffer) => {
      if (request) return;
      let messages: Buffer[];
      try {
        messages = reader.push(chunk, 1);
      } catch (err) {
        return trailersOrEnd(stream, (err as GrpcError).code, (err as GrpcError).message);
      }
      if (messages.length === 0) return;
      request = messages[0];
      clearTimeout(waiting);
      let message: unknown;
      try {
        message = route.deserialize(request);
      } catch (err) {
        return trailersOnly(stream, status.INTERNAL, `cannot parse the request: ${(err as Error).message}`);
      }
      if (route.unary) this.enqueueUnary(stream, path, route, message, ctx);
      else this.runStreaming(stream, route, message, ctx);
    });
    stream.on('end', () => {
      if (request) return;
      clearTimeout(waiting);
      trailersOnly(stream, status.INTERNAL, reader.buffered !== 0 ? 'the request ended inside a gRPC message (truncated)' : 'expected one gRPC message, got none');
    });
  }

  /** Unary calls whose request arrived in this event-loop turn. */
  private unaryQueue: Array<{ stream: http2.ServerHttp2Stream; path: string; route: Route; request: unknown; ctx: CallContext }> = [];

  /**
   * Unary calls that arrive in one event-loop turn are handled together after it: every handler
   * first, then every response. The CA's handlers are P-256 verify and sign, whose precomputed
   * tables stay in the CPU cache through a batch instead of being evicted by HTTP/2 and TLS work
   * between calls (measured: the signing share of a call fell from 450 to about 300 µs).
   */
  private enqueueUnary(stream: http2.ServerHttp2Stream, path: string, route: Route, request: unknown, ctx: CallContext): void {
    this.unaryQueue.push({ stream, path, route, request, ctx });
    if (this.unaryQueue.length === 1) setImmediate(() => this.runQueuedUnary());
  }

  private runQueuedUnary(): void {
    const batch = this.unaryQueue;
    this.unaryQueue = [];
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown } | undefined> = new Array(batch.length);
    batch.forEach((call, i) => {
      if (call.stream.closed || call.stream.destroyed) return;
      try {
        const out = call.route.unary!(call.request, call.ctx);
        if (out instanceof Promise) out.then((v) => this.finishUnary(call.stream, call.path, call.route, v), (err) => this.fail(call.stream, call.path, err));
        else results[i] = { ok: true, value: out };
      } catch (error) {
        results[i] = { ok: false, error };
      }
    });
    batch.forEach((call, i) => {
      const r = results[i];
      if (!r) return;
      if (r.ok) this.finishUnary(call.stream, call.path, call.route, r.value);
      else this.fail(call.stream, call.path, r.error);
    });
  }

  private finishUnary(stream: http2.ServerHttp2Stream, path: string, route: Route, res: unknown): void {
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    let payload: Buffer;
    try {
      payload = route.serialize(res);
    } catch (err) {
      return this.fail(stream, path, err);
    }
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => {
      stream.sendTrailers({ 'grpc-status': '0' });
      // On the next turn: a reset submitted now would overtake the trailers on the wire.
      setImmediate(() => stopReading(stream));
    });
    stream.end(frame(payload));
  }

  private writer(stream: http2.ServerHttp2Stream, route: Route): ServerStream<unknown> {
    let headersSent = false;
    let ended = false;
    const closeListeners: Array<() => void> = [];
    const sendHeaders = () => {
      if (headersSent) return;
      headersSent = true;
      stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    };
    stream.once('close', () => {
      ended = true;
      for (const l of closeListeners.splice(0)) l();
    });
    const writer: ServerStream<unknown> = {
      get closed() {
        return ended || stream.destroyed || stream.closed;
      },
      write: (m) => {
        if (writer.closed) return false;
        sendHeaders();
        return stream.write(frame(route.serialize(m)));
      },
      end: (error) => {
        if (writer.closed) return;
        ended = true;
        if (!headersSent && !stream.headersSent) return trailersOnly(stream, error?.code ?? status.OK, error?.message ?? '');
        sendHeaders();
        const trailers = error ? { 'grpc-status': String(error.code), 'grpc-message': encodeGrpcMessage(error.message) } : { 'grpc-status': '0' };
        stream.once('wantTrailers', () => {
          stream.sendTrailers(trailers);
          setImmediate(() => stopReading(stream));
        });
        stream.end();
      },
      onClose: (l) => {
        if (ended || stream.closed) l();
        else closeListeners.push(l);
      },
    };
    writers.set(stream, writer);
    return writer;
  }

  private runStreaming(stream: http2.ServerHttp2Stream, route: Route, request: unknown, ctx: CallContext): void {
    const writer = this.writer(stream, route);
    try {
      route.streaming!(request, ctx, writer);
    } catch (err) {
      writer.end(err instanceof GrpcError ? err : new GrpcError(status.INTERNAL, `internal error: ${(err as Error).message}`));
    }
  }

  private runBidi(stream: http2.ServerHttp2Stream, route: Route, ctx: CallContext, reader: MessageReader, firstMessage: () => void): void {
    const writer = this.writer(stream, route);
    const messageListeners: Array<(m: unknown) => void> = [];
    const endListeners: Array<() => void> = [];
    const call: BidiCall<unknown, unknown> = {
      ctx,
      get closed() {
        return writer.closed;
      },
      write: writer.write,
      end: writer.end,
      onClose: writer.onClose,
      onMessage: (l) => messageListeners.push(l),
      onEnd: (l) => endListeners.push(l),
    };
    try {
      route.bidi!(call);
    } catch (err) {
      return writer.end(err instanceof GrpcError ? err : new GrpcError(status.INTERNAL, `internal error: ${(err as Error).message}`));
    }
    stream.on('data', (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = reader.push(chunk);
      } catch (err) {
        return writer.end(err as GrpcError);
      }
      for (const raw of messages) {
        if (writer.closed) return;
        firstMessage();
        let m: unknown;
        try {
          m = route.deserialize(raw);
        } catch (err) {
          return writer.end(new GrpcError(status.INTERNAL, `cannot parse a request: ${(err as Error).message}`));
        }
        try {
          for (const l of messageListeners) l(m);
        } catch (err) {
          this.opts.onError?.(err as Error, stream.sentHeaders?.[HTTP2_HEADER_PATH] as string ?? '');
          return writer.end(err instanceof GrpcError ? err : new GrpcError(status.INTERNAL, `internal error: ${(err as Error).message}`));
        }
      }
    });
    stream.on('end', () => {
      if (reader.buffered !== 0) return writer.end(new GrpcError(status.INTERNAL, 'the stream ended inside a message'));
      for (const l of endListeners) l();
    });
  }

  private fail(stream: http2.ServerHttp2Stream, path: string, err: unknown): void {
    if (err instanceof GrpcError) return trailersOnly(stream, err.code, err.message);
    this.opts.onError?.(err as Error, path);
    trailersOnly(stream, status.INTERNAL, `internal error: ${(err as Error)?.message}`);
  }
}

function trailersOnly(stream: http2.ServerHttp2Stream, code: status, message: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ...RESPONSE_HEADERS, 'grpc-status': String(code), ...(message ? { 'grpc-message': encodeGrpcMessage(message) } : {}) }, { endStream: true });
  stopReading(stream);
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * After the server's answer, a client still sending is told to stop with RST_STREAM(NO_ERROR),
 * sent after the answer's frames (as grpc-go does); what it sent meanwhile is dropped unread.
 */
function stopReading(stream: http2.ServerHttp2Stream): void {
  if (stream.readableEnded || stream.destroyed || stream.closed) return;
  stream.removeAllListeners('data');
  stream.resume();
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

/** The sending half of each streaming call, so that a deadline can end it with a status in its trailers. */
const writers = new WeakMap<http2.ServerHttp2Stream, ServerStream<unknown>>();

/** Ends a call with a status whether or not its response headers went out already. */
function trailersOrEnd(stream: http2.ServerHttp2Stream, code: status, message: string): void {
  if (stream.destroyed || stream.closed) return;
  const writer = writers.get(stream);
  if (writer) return writer.end(new GrpcError(code, message));
  if (!stream.headersSent) return trailersOnly(stream, code, message);
  stream.close(http2.constants.NGHTTP2_CANCEL); // a unary response is on its way: too late for a status
}
