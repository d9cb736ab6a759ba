/**
 * A lean DER encoder and reader: just what certificates and CSRs need. Issuance is the hot path
 * of the whole system, so this builds bytes directly instead of going through a schema library.
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/**
 * One TLV with the given tag around the concatenated contents. Written into one buffer (from
 * Node's pool when small): a certificate and its key are about forty TLVs, and a header buffer
 * plus a concatenation for each was a third of the time to issue one.
 */
export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  let len = 0;
  for (let i = 0; i < contents.length; i++) len += contents[i].length;
  const hdr = len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
  if (len >= 0x1000000) throw new Error(`DER value of ${len} bytes is too long`);
  const out = Buffer.allocUnsafe(hdr + len);
  out[0] = tag;
  if (hdr === 2) out[1] = len;
  else {
    out[1] = 0x80 | (hdr - 2);
    for (let i = hdr - 1, v = len; i >= 2; i--, v >>= 8) out[i] = v & 0xff;
  }
  let o = hdr;
  for (let i = 0; i < contents.length; i++) {
    out.set(contents[i], o);
    o += contents[i].length;
  }
  return out;
}

export const seq = (...items: Buffer[]): Buffer => tlv(TAG.SEQUENCE, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(TAG.SET, ...items);
export const octets = (b: Buffer): Buffer => tlv(TAG.OCTET_STRING, b);
export const bitString = (b: Buffer, unusedBits = 0): Buffer => tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), b);
export const bool = (v: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([v ? 0xff : 0x00]));
export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0]);
/** Context-specific tag [n]; constructed for EXPLICIT wrapping, primitive for IMPLICIT strings. */
export const contextTag = (n: number, constructed: boolean, ...items: Buffer[]): Buffer =>
  tlv((constructed ? 0xa0 : 0x80) | n, ...items);

/** A non-negative INTEGER from big-endian bytes (adds the sign byte when needed). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  return tlv(TAG.INTEGER, trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function smallInteger(n: number): Buffer {
  if (n < 0 || n > 0x7fffffff) throw new Error(`integer ${n} out of range`);
  const bytes: number[] = [];
  do {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  } while (n > 0);
  if (bytes[0] & 0x80) bytes.unshift(0);
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

const oidCache = new Map<string, Buffer>();
/** An OBJECT IDENTIFIER from dotted text (cached: the same few OIDs recur in every certificate). */
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  const enc = tlv(TAG.OID, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

export function decodeOid(content: Buffer): string {
  if (content.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  const subids: Array<number | bigint> = [];
  let v = 0;
  let big: bigint | undefined; // an arc past 2^53 (2.25.<UUID>) is read exactly, not rounded
  let fresh = true;
  for (let i = 0; i < content.length; i++) {
    // X.690 8.19.2: the shortest form, and the last subidentifier must end in the content
    if (fresh && content[i] === 0x80) throw new DerError('non-minimal OBJECT IDENTIFIER arc');
    if (big === undefined && v < 2 ** 45) v = v * 128 + (content[i] & 0x7f);
    else big = (big ?? BigInt(v)) * 128n + BigInt(content[i] & 0x7f);
    fresh = !(content[i] & 0x80);
    if (fresh) {
      subids.push(big ?? v);
      v = 0;
      big = undefined;
    }
  }
  if (!fresh) throw new DerError('truncated OBJECT IDENTIFIER: the last arc runs past the end');
  // the first subidentifier is 40 * arc1 + arc2, arc1 in 0..2 (2.x takes every value from 80 up)
  const first = subids[0];
  const arcs: Array<number | bigint> =
    typeof first === 'bigint' ? [2, first - 80n] : first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  for (let i = 1; i < subids.length; i++) arcs.push(subids[i]);
  return arcs.join('.');
}

/** The last few encoded times: a reconcile issues thousands of certificates within the same seconds. */
const recentTimes = new Map<number, Buffer>();

/** UTCTime through 2049, GeneralizedTime after, as RFC 5280 requires (to the second). */
export function time(date: Date): Buffer {
  const seconds = Math.floor(date.getTime() / 1000);
  const hit = recentTimes.get(seconds);
  if (hit) return hit;
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19);
  const year = date.getUTCFullYear();
  const enc = year >= 1950 && year < 2050 ? tlv(TAG.UTC_TIME, Buffer.from(digits.slice(2) + 'Z', 'latin1')) : tlv(TAG.GENERALIZED_TIME, Buffer.from(digits + 'Z', 'latin1'));
  if (recentTimes.size >= 8) recentTimes.clear();
  recentTimes.set(seconds, enc);
  return enc;
}

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** One decoded TLV: its tag, content and whole encoding (both views into the input). */
export interface Node {
  tag: number;
  content: Buffer;
  raw: Buffer;
}

/** Reads the TLV at `offset`; strict about lengths (definite, minimal, inside the buffer). */
export function readNode(buf: Buffer, offset = 0): Node {
  if (offset + 2 > buf.length) throw new DerError('truncated DER: missing tag or length');
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError('unsupported multi-byte DER tag');
  let len = buf[offset + 1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('indefinite or oversized DER length');
    if (offset + 2 + n > buf.length) throw new DerError('truncated DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i];
    if (len < 0x80 || (n > 1 && buf[offset + 2] === 0)) throw new DerError('non-minimal DER length');
    hdr += n;
  }
  const end = offset + hdr + len;
  if (end > buf.length) throw new DerError('truncated DER: content runs past the end');
  return { tag, content: buf.subarray(offset + hdr, end), raw: buf.subarray(offset, end) };
}

/** The children of a constructed node, in order. */
export function children(node: Node | Buffer): Node[] {
  const content = Buffer.isBuffer(node) ? node : node.content;
  const out: Node[] = [];
  for (let off = 0; off < content.length; ) {
    const child = readNode(content, off);
    out.push(child);
    off += child.raw.length;
  }
  return out;
}

/** Reads exactly one TLV that spans the whole buffer. */
export function readWhole(buf: Buffer, what: string): Node {
  const node = readNode(buf, 0);
  if (node.raw.length !== buf.length) throw new DerError(`${what}: trailing bytes after the DER value`);
  return node;
}

export function expectTag(node: Node | undefined, tag: number, what: string): Node {
  if (!node) throw new DerError(`${what}: missing`);
  if (node.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)}`);
  return node;
}
