/**
 * The protobuf wire format, only as far as our hand-written codecs need it: varints, length-
 * delimited fields, and skipping what a message does not know. The CA's and the discovery
 * services' messages are flat, and a hand codec keeps the per-call cost of the hot paths
 * (CreateCertificate, SDS/xDS pushes) to a few microseconds; tests check every codec against the
 * .proto files as protobufjs reads them.
 */

export const WIRE = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;

/** Bytes that are not a valid encoding of the message (truncated, a bad varint, a bad wire type). */
export class ProtoDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoDecodeError';
  }
}

/** Builds one message; fields are written in the order they are added. */
export class Writer {
  private chunks: Buffer[] = [];
  private readonly head = Buffer.allocUnsafe(16);

  private varint(v: number): void {
    let n = 0;
    if (v < 0) {
      // int32/int64 negatives are 10-byte two's-complement varints.
      let b = BigInt.asUintN(64, BigInt(v));
      while (b >= 0x80n) {
        this.head[n++] = Number(b & 0x7fn) | 0x80;
        b >>= 7n;
      }
      this.head[n++] = Number(b);
    } else {
      while (v >= 0x80) {
        this.head[n++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      this.head[n++] = v;
    }
    this.chunks.push(Buffer.from(this.head.subarray(0, n)));
  }

  /** A varint field, left out when zero (proto3 defaults). */
  int(field: number, v: number): this {
    if (v !== 0) {
      this.varint((field << 3) | WIRE.VARINT);
      this.varint(v);
    }
    return this;
  }

  bool(field: number, v: boolean): this {
    return v ? this.int(field, 1) : this;
  }

  /** A string or bytes field, left out when empty. */
  bytes(field: number, v: Buffer | string | undefined): this {
    if (v === undefined) return this;
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    if (b.length === 0) return this;
    return this.always(field, b);
  }

  /** A double field (I64), written even when zero (a oneof member must be present). */
  double(field: number, v: number): this {
    this.varint((field << 3) | WIRE.I64);
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v);
    this.chunks.push(b);
    return this;
  }

  /** A length-delimited field that is present even when empty (repeated strings, sub-messages). */
  always(field: number, b: Buffer | string): this {
    const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    this.varint((field << 3) | WIRE.LEN);
    this.varint(bytes.length);
    this.chunks.push(bytes);
    return this;
  }

  finish(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
  }
}

export type FieldValue = number | Buffer;

/**
 * Calls `on(field, wireType, value)` for each field of a message; LEN, I64 and I32 values are
 * subarrays of `buf` (no copy), VARINT values numbers. Unknown fields are the caller's to ignore.
 * Throws ProtoDecodeError for bytes that are not a message. With `only`, other fields are
 * stepped over without a value made for them (a real Envoy's node has 516 extensions nobody reads).
 */
export function readFields(buf: Buffer, on: (field: number, wire: number, v: FieldValue) => void, only?: ReadonlySet<number>): void {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    const start = pos;
    for (let i = 0; i < 7; i++) {
      if (pos >= buf.length) throw new ProtoDecodeError('truncated varint');
      const b = buf[pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 0x80;
    }
    // Beyond 49 bits (negative int32/int64 are 10 bytes): exact, as a signed 64-bit value.
    pos = start;
    let big = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= buf.length) throw new ProtoDecodeError('truncated varint');
      const b = buf[pos++];
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return Number(BigInt.asIntN(64, big));
    }
    throw new ProtoDecodeError('varint longer than 10 bytes');
  };
  while (pos < buf.length) {
    const key = varint();
    if (key < 0) throw new ProtoDecodeError('negative field key');
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 0) throw new ProtoDecodeError('field number 0');
    switch (wire) {
      case WIRE.VARINT: {
        const v = varint();
        if (!only || only.has(field)) on(field, wire, v);
        break;
      }
      case WIRE.LEN: {
        const len = varint();
        if (len < 0 || pos + len > buf.length) throw new ProtoDecodeError(`field ${field}: length ${len} runs past the end of the message`);
        if (!only || only.has(field)) on(field, wire, buf.subarray(pos, pos + len));
        pos += len;
        break;
      }
      case WIRE.I64:
      case WIRE.I32: {
        const len = wire === WIRE.I64 ? 8 : 4;
        if (pos + len > buf.length) throw new ProtoDecodeError(`field ${field}: truncated`);
        if (!only || only.has(field)) on(field, wire, buf.subarray(pos, pos + len));
        pos += len;
        break;
      }
      default:
        throw new ProtoDecodeError(`field ${field}: unsupported wire type ${wire}`);
    }
    if (pos > buf.length) throw new ProtoDecodeError(`field ${field}: truncated`);
  }
}

export const asString = (v: FieldValue): string => (Buffer.isBuffer(v) ? v.toString('utf8') : '');
export const asBytes = (v: FieldValue): Buffer => (Buffer.isBuffer(v) ? Buffer.from(v) : Buffer.alloc(0));
export const asNumber = (v: FieldValue): number => (typeof v === 'number' ? v : 0);
/** int32 fields arrive as 64-bit varints when negative. */
export const asInt32 = (v: FieldValue): number => (typeof v === 'number' ? (v > 0x7fffffff && v < 2 ** 32 ? v - 2 ** 32 : v) : 0);

/** A message's encoder and decoder. */
export interface Codec<T> {
  encode(m: T): Buffer;
  decode(b: Buffer): T;
}

/**
 * `b` in memory of its own, for bytes kept long (encoding caches). Small Buffers and protobufjs
 * results are slices of a shared 8 KB pool, which stays alive while any slice does: thousands of
 * cached encodings would each pin a pool.
 */
export function unpooled(b: Uint8Array): Buffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, 0, b.byteLength);
  const own = Buffer.allocUnsafeSlow(b.byteLength);
  own.set(b);
  return own;
}
