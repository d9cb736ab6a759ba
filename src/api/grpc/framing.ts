/** gRPC's length-prefixed messages (PROTOCOL-HTTP2.md): a flag byte, a 4-byte big-endian length, the message. */
import { GrpcError, status } from './status';

export function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

/**
 * Cuts a byte stream into messages as it arrives. A length prefix above `maxMessageBytes` is
 * refused before anything of that size is held (RESOURCE_EXHAUSTED, as grpc-go words it); a
 * compressed message is refused too, since this server never offers an encoding. A message that
 * spans chunks (a real Envoy's first SDS request is about 60 KB, in 16 KB frames) is copied into
 * one buffer of its length as the chunks come, not re-concatenated with each chunk.
 */
export class MessageReader {
  /** A prefix not yet whole (fewer than 5 bytes). */
  private head: Buffer = EMPTY;
  /** The message being filled, allocated at its length, and how much of it has arrived. */
  private partial: Buffer | undefined;
  private filled = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes received that do not yet make a whole message. */
  get buffered(): number {
    return this.head.length + (this.partial ? 5 + this.filled : 0);
  }

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    if (this.partial) {
      const n = chunk.copy(this.partial, this.filled, 0, Math.min(chunk.length, this.partial.length - this.filled));
      this.filled += n;
      pos = n;
      if (this.filled < this.partial.length) return out;
      out.push(this.partial);
      this.partial = undefined;
    }
    let buf = chunk;
    if (this.head.length > 0) {
      buf = Buffer.concat([this.head, chunk.subarray(pos)]);
      pos = 0;
      this.head = EMPTY;
    }
    while (buf.length - pos >= 5) {
      const length = buf.readUInt32BE(pos + 1);
      if (length > this.maxMessageBytes) {
        throw new GrpcError(status.RESOURCE_EXHAUSTED, `received message larger than max (${length} vs. ${this.maxMessageBytes} bytes)`);
      }
      if (buf[pos] !== 0) {
        throw new GrpcError(buf[pos] === 1 ? status.UNIMPLEMENTED : status.INTERNAL, buf[pos] === 1 ? 'compressed messages are not supported; send them uncompressed' : `invalid message flag ${buf[pos]}`);
      }
      const start = pos + 5;
      if (buf.length - start < length) {
        this.partial = Buffer.allocUnsafe(length);
        this.filled = buf.copy(this.partial, 0, start);
        return out;
      }
      out.push(buf.subarray(start, start + length));
      pos = start + length;
    }
    // Keep only the unfinished prefix, copied so the chunk it came from can be freed.
    if (pos < buf.length) this.head = Buffer.from(buf.subarray(pos));
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
