/** gRPC's length-prefixed messages (PROTOCOL-HTTP2.md): a flag byte, a 4-byte big-endian length, the message. */
import { FieldPlan, MessageSieve } from '../field-sieve';
import { GrpcError, status } from './status';

export function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

/** A message whose bytes are still arriving. */
interface PendingMessage {
  /** Takes bytes from `chunk[start..]`, at most what the message lacks; returns how many. */
  push(chunk: Buffer, start: number): number;
  readonly done: boolean;
  readonly received: number;
  result(): Buffer;
}

/** The whole message, copied into one buffer of its length as the chunks come. */
class WholeMessage implements PendingMessage {
  private readonly buf: Buffer;
  received = 0;

  constructor(length: number) {
    this.buf = Buffer.allocUnsafe(length);
  }

  get done(): boolean {
    return this.received === this.buf.length;
  }

  push(chunk: Buffer, start: number): number {
    const n = chunk.copy(this.buf, this.received, start, Math.min(chunk.length, start + this.buf.length - this.received));
    this.received += n;
    return n;
  }

  result(): Buffer {
    return this.buf;
  }
}

/** Messages at least this long that span chunks go through the field plan, when there is one. */
const SIEVE_MIN_BYTES = 8 * 1024;

/**
 * Cuts a byte stream into messages as it arrives. A length prefix above `maxMessageBytes` is
 * refused before anything of that size is held (RESOURCE_EXHAUSTED, as grpc-go words it); a
 * compressed message is refused too, since this server never offers an encoding. A message that
 * spans chunks is copied once into a buffer of its length, not re-concatenated with each chunk;
 * with a `plan`, a large one keeps only the planned fields as it comes (field-sieve.ts: a real
 * Envoy's ~60 KB first request shrinks to what the handler reads, and is never held whole).
 */
export class MessageReader {
  /** Bytes not yet parsed: a prefix not yet whole, or what follows the `maxMessages` of the last push. */
  private head: Buffer = EMPTY;
  private pending: PendingMessage | undefined;

  constructor(private readonly maxMessageBytes: number, private readonly plan?: FieldPlan) {}

  /** Bytes received that do not yet make a whole message. */
  get buffered(): number {
    return this.head.length + (this.pending ? 5 + this.pending.received : 0);
  }

  /** The whole messages `chunk` completes, at most `maxMessages` (what follows them stays unread). */
  push(chunk: Buffer, maxMessages = Infinity): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    if (this.pending) {
      pos = this.pending.push(chunk, 0);
      if (!this.pending.done) return out;
      out.push(this.pending.result());
      this.pending = undefined;
    }
    let buf = chunk;
    if (this.head.length > 0) {
      buf = Buffer.concat([this.head, chunk.subarray(pos)]);
      pos = 0;
      this.head = EMPTY;
    }
    while (buf.length - pos >= 5 && out.length < maxMessages) {
      const length = buf.readUInt32BE(pos + 1);
      if (length > this.maxMessageBytes) {
        throw new GrpcError(status.RESOURCE_EXHAUSTED, `received message larger than max (${length} vs. ${this.maxMessageBytes} bytes)`);
      }
      if (buf[pos] !== 0) {
        throw new GrpcError(buf[pos] === 1 ? status.UNIMPLEMENTED : status.INTERNAL, buf[pos] === 1 ? 'compressed messages are not supported; send them uncompressed' : `invalid message flag ${buf[pos]}`);
      }
      const start = pos + 5;
      if (buf.length - start < length) {
        this.pending = this.plan && length >= SIEVE_MIN_BYTES ? new MessageSieve(this.plan, length) : new WholeMessage(length);
        this.pending.push(buf, start);
        return out;
      }
      out.push(buf.subarray(start, start + length));
      pos = start + length;
    }
    // Keep only what is not parsed yet, copied so the chunk it came from can be freed.
    if (pos < buf.length) this.head = Buffer.from(buf.subarray(pos));
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
