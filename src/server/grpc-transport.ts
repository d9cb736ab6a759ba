/**
 * gRPC over HTTP/2, server side, on node:http2 directly: unary and server-streaming methods,
 * identity encoding only. The CA's calls are small and CPU-bound, and a general gRPC server
 * (interceptor chains, metadata objects, per-call timers, channelz) costs more per call than
 * the work these handlers do; this is the part of the protocol they need
 * (grpc/grpc PROTOCOL-HTTP2.md): length-prefixed messages, `grpc-status`/`grpc-message`
 * trailers, trailers-only errors.
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import { status } from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/grpc-js';

export { status };

/** A refusal with its gRPC status; the message is one line for the caller. */
export class GrpcError extends Error {
  constructor(readonly code: status, message: string) {
    super(message);
    this.name = 'GrpcError';
  }
}

export interface CallContext {
  /** The HTTP/2 connection: its TLS peer is the same for every call on it. */
  session: http2.ServerHttp2Session;
  socket: TLSSocket;
  /** Remote address, for rate limiting unauthenticated calls. */
  peerAddress: string;
}

export interface ServerStreamWriter<T> {
  write(message: T): void;
  /** Ends the stream with a status (OK when omitted). */
  end(error?: GrpcError): void;
  onClose(listener: () => void): void;
  readonly closed: boolean;
}

type Unary<Req, Res> = (request: Req, ctx: CallContext) => Res | Promise<Res>;
type Streaming<Req, Res> = (request: Req, ctx: CallContext, out: ServerStreamWriter<Res>) => void;

interface Route {
  deserialize(b: Buffer): unknown;
  serialize(m: unknown): Buffer;
  unary?: Unary<unknown, unknown>;
  streaming?: Streaming<unknown, unknown>;
}

export interface GrpcServerOptions {
  /** TLS: our certificate and key; `ca` verifies client certificates, which are asked for but optional. */
  tls: SecureContextOptions;
  maxMessageBytes?: number;
  onError?: (err: Error, path: string) => void;
}

const GRPC_CONTENT_TYPE = 'application/grpc';
const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH, HTTP2_HEADER_METHOD } = http2.constants;

export class GrpcHttp2Server {
  private readonly routes = new Map<string, Route>();
  private readonly server: http2.Http2SecureServer;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly maxMessageBytes: number;

  constructor(private readonly opts: GrpcServerOptions) {
    this.maxMessageBytes = opts.maxMessageBytes ?? 64 * 1024;
    this.server = http2.createSecureServer({
      ...opts.tls,
      requestCert: true,
      rejectUnauthorized: false, // AttestNode is called before the node has a certificate; the handlers check `authorized`
      ALPNProtocols: ['h2'],
      settings: { maxConcurrentStreams: 1000 },
    });
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', () => undefined);
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.server.on('tlsClientError', () => undefined);
  }

  unary<Req, Res>(def: MethodDefinition<Req, Res>, handler: Unary<Req, Res>): void {
    this.routes.set(def.path, {
      deserialize: def.requestDeserialize as (b: Buffer) => unknown,
      serialize: def.responseSerialize as (m: unknown) => Buffer,
      unary: handler as Unary<unknown, unknown>,
    });
  }

  serverStreaming<Req, Res>(def: MethodDefinition<Req, Res>, handler: Streaming<Req, Res>): void {
    this.routes.set(def.path, {
      deserialize: def.requestDeserialize as (b: Buffer) => unknown,
      serialize: def.responseSerialize as (m: unknown) => Buffer,
      streaming: handler as Streaming<unknown, unknown>,
    });
  }

  /** New certificate and key for new connections (existing ones keep theirs). */
  setSecureContext(tls: SecureContextOptions): void {
    this.server.setSecureContext(tls);
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections; closes existing ones once their calls end, or after `graceMs`. */
  close(graceMs = 2000): Promise<void> {
    return new Promise((resolve) => {
      const force = setTimeout(() => {
        for (const s of this.sessions) s.destroy();
      }, graceMs);
      force.unref();
      this.server.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const s of this.sessions) s.close();
    });
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const path = headers[HTTP2_HEADER_PATH] as string;
    const contentType = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (headers[HTTP2_HEADER_METHOD] !== 'POST' || typeof contentType !== 'string' || !contentType.startsWith(GRPC_CONTENT_TYPE)) {
      stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
      return;
    }
    const route = this.routes.get(path);
    if (!route) return this.trailersOnly(stream, status.UNIMPLEMENTED, `unknown method ${path}`);
    const enc = headers['grpc-encoding'];
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > this.maxMessageBytes + 5) tooBig = true;
      else chunks.push(chunk);
    });
    stream.on('end', () => {
      if (stream.destroyed || stream.closed) return;
      if (tooBig) return this.trailersOnly(stream, status.RESOURCE_EXHAUSTED, `request larger than ${this.maxMessageBytes} bytes`);
      const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      // Exactly one length-prefixed message: flag byte, 4-byte big-endian length, message.
      if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) return this.trailersOnly(stream, status.INTERNAL, 'expected exactly one gRPC message');
      if (body[0] !== 0 && enc !== undefined && enc !== 'identity') return this.trailersOnly(stream, status.UNIMPLEMENTED, `grpc-encoding ${enc} is not supported; send uncompressed messages`);
      if (body[0] !== 0) return this.trailersOnly(stream, status.INTERNAL, 'compressed message without grpc-encoding');
      let request: unknown;
      try {
        request = route.deserialize(body.subarray(5));
      } catch (err) {
        return this.trailersOnly(stream, status.INTERNAL, `cannot parse the request: ${(err as Error).message}`);
      }
      const socket = stream.session!.socket as TLSSocket;
      const ctx: CallContext = { session: stream.session as http2.ServerHttp2Session, socket, peerAddress: socket.remoteAddress ?? '' };
      if (route.unary) this.enqueueUnary(stream, path, route, request, ctx);
      else this.runStreaming(stream, route, request, ctx);
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
    if (stream.destroyed || stream.closed) return;
    let payload: Buffer;
    try {
      payload = route.serialize(res);
    } catch (err) {
      return this.fail(stream, path, err);
    }
    stream.respond({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: GRPC_CONTENT_TYPE }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(frame(payload));
  }

  private runStreaming(stream: http2.ServerHttp2Stream, route: Route, request: unknown, ctx: CallContext): void {
    let headersSent = false;
    let ended = false;
    const closeListeners: Array<() => void> = [];
    const sendHeaders = () => {
      if (headersSent) return;
      headersSent = true;
      stream.respond({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: GRPC_CONTENT_TYPE }, { waitForTrailers: true });
    };
    const writer: ServerStreamWriter<unknown> = {
      get closed() {
        return ended || stream.destroyed || stream.closed;
      },
      write: (m) => {
        if (writer.closed) return;
        sendHeaders();
        stream.write(frame(route.serialize(m)));
      },
      end: (error) => {
        if (writer.closed) return;
        ended = true;
        if (!headersSent && error) return this.trailersOnly(stream, error.code, error.message);
        sendHeaders();
        const trailers = error ? { 'grpc-status': String(error.code), 'grpc-message': encodeMessage(error.message) } : { 'grpc-status': '0' };
        stream.once('wantTrailers', () => stream.sendTrailers(trailers));
        stream.end();
      },
      onClose: (l) => closeListeners.push(l),
    };
    stream.once('close', () => {
      ended = true;
      for (const l of closeListeners) l();
    });
    try {
      route.streaming!(request, ctx, writer);
    } catch (err) {
      writer.end(err instanceof GrpcError ? err : new GrpcError(status.INTERNAL, `internal error: ${(err as Error).message}`));
    }
  }

  private fail(stream: http2.ServerHttp2Stream, path: string, err: unknown): void {
    if (err instanceof GrpcError) return this.trailersOnly(stream, err.code, err.message);
    this.opts.onError?.(err as Error, path);
    this.trailersOnly(stream, status.INTERNAL, `internal error: ${(err as Error)?.message}`);
  }

  private trailersOnly(stream: http2.ServerHttp2Stream, code: status, message: string): void {
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    stream.respond(
      { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: GRPC_CONTENT_TYPE, 'grpc-status': String(code), 'grpc-message': encodeMessage(message) },
      { endStream: true },
    );
  }
}

function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md): printable ASCII except '%' passes through. */
function encodeMessage(message: string): string {
  return Buffer.from(message, 'utf8').reduce((s, b) => s + (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`), '');
}
