/**
 * A bare HTTP/2 client over TLS, frame by frame (RFC 9113), for tests that must break rules a
 * real HTTP/2 library will not: opening more streams than the server's SETTINGS allow, say. It
 * writes the connection preface, SETTINGS (and acknowledges the server's), HEADERS encoded as
 * HPACK literals without indexing or Huffman (RFC 7541 §6.2.2), DATA and RST_STREAM, and reads
 * frames back as they are; it decodes no HPACK (the server's header blocks are only counted).
 */
import * as tls from 'node:tls';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const SETTING = { MAX_CONCURRENT_STREAMS: 0x3 } as const;
/** RFC 9113 §7 error codes. */
export const H2_ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8, REFUSED_STREAM: 7 } as const;

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1), the string length prefix without Huffman. */
function hpackInt(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/** A header block of literals without indexing, new names: no state shared with the server's decoder. */
export function hpackLiterals(headers: Array<[string, string]>): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0x00]), hpackString(n), hpackString(v)]));
}

export class RawH2Connection {
  readonly frames: Frame[] = [];
  /** The server's SETTINGS, by identifier. */
  readonly serverSettings = new Map<number, number>();
  private buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private closed = false;
  private nextStreamId = 1;

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Connects over TLS with ALPN h2, sends the preface and empty SETTINGS, and waits for the server's SETTINGS. */
  static async connect(port: number, opts: { ca: string; key?: string; cert?: string; servername?: string }): Promise<RawH2Connection> {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: opts.ca, key: opts.key, cert: opts.cert, servername: opts.servername ?? 'istio-ca', ALPNProtocols: ['h2'] });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    const c = new RawH2Connection(socket);
    socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
    await c.waitFor('the server SETTINGS', () => c.frames.some((f) => f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)));
    return c;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opens a stream with a gRPC request's headers (no END_STREAM unless `end`); returns its id. */
  openStream(path: string, extra: Array<[string, string]> = [], end = false): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const block = hpackLiterals([
      [':method', 'POST'],
      [':scheme', 'https'],
      [':path', path],
      [':authority', 'istio-ca'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ...extra,
    ]);
    this.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | (end ? FLAG.END_STREAM : 0), id, block));
    return id;
  }

  data(streamId: number, payload: Buffer, end = false): void {
    this.socket.write(frame(FRAME.DATA, end ? FLAG.END_STREAM : 0, streamId, payload));
  }

  /** Resolves once `check` holds over the frames received (or the connection closed and it never will). */
  async waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!check()) {
      if (this.closed) throw new Error(`the connection closed before ${what}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the server did not close the connection')), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** The error code of the RST_STREAM the server sent for `streamId`, if any. */
  rstCode(streamId: number): number | undefined {
    const f = this.frames.find((x) => x.type === FRAME.RST_STREAM && x.streamId === streamId);
    return f ? f.payload.readUInt32BE(0) : undefined;
  }

  /** The GOAWAY the server sent, if any: its last stream id and error code. */
  goaway(): { lastStreamId: number; code: number } | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f ? { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) } : undefined;
  }

  /** Whether the server ended `streamId` (a HEADERS or DATA frame with END_STREAM). */
  endedByServer(streamId: number): boolean {
    return this.frames.some((f) => f.streamId === streamId && (f.type === FRAME.HEADERS || f.type === FRAME.DATA) && f.flags & FLAG.END_STREAM);
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 9) {
      const length = this.buffer.readUIntBE(0, 3);
      if (this.buffer.length < 9 + length) break;
      const f: Frame = { type: this.buffer[3], flags: this.buffer[4], streamId: this.buffer.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.buffer.subarray(9, 9 + length)) };
      this.buffer = this.buffer.subarray(9 + length);
      this.frames.push(f);
      if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) {
        for (let i = 0; i + 6 <= f.payload.length; i += 6) this.serverSettings.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
        this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      } else if (f.type === FRAME.PING && !(f.flags & FLAG.ACK)) {
        this.socket.write(frame(FRAME.PING, FLAG.ACK, 0, f.payload));
      }
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
