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
 * compressed message is refused too, since this server never offers an encoding.
 */
export class MessageReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes received that do not yet make a whole message. */
  get buffered(): number {
    return this.pending.length;
  }

  /** The whole messages `chunk` completes, at most `maxMessages` (what follows them stays unread). */
  push(chunk: Buffer, maxMessages = Infinity): Buffer[] {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    while (buf.length >= 5 && out.length < maxMessages) {
      const length = buf.readUInt32BE(1);
      if (length > this.maxMessageBytes) {
        throw new GrpcError(status.RESOURCE_EXHAUSTED, `received message larger than max (${length} vs. ${this.maxMessageBytes} bytes)`);
      }
      if (buf[0] !== 0) {
        throw new GrpcError(buf[0] === 1 ? status.UNIMPLEMENTED : status.INTERNAL, buf[0] === 1 ? 'compressed messages are not supported; send them uncompressed' : `invalid message flag ${buf[0]}`);
      }
      if (buf.length < 5 + length) break;
      out.push(buf.subarray(5, 5 + length));
      buf = buf.subarray(5 + length);
    }
    // Keep only the unfinished tail, copied so the chunk it came from can be freed.
    this.pending = buf.length === 0 ? Buffer.alloc(0) : out.length > 0 || buf === chunk ? Buffer.from(buf) : buf;
    return out;
  }
}
