/**
 * Property tests for the gRPC transport's parsers of untrusted input: the length-prefixed message
 * reader (any chunking round-trips; hostile bytes only ever raise GrpcError, and what it holds
 * never exceeds one message under the limit), the grpc-timeout header, and grpc-message encoding.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fuzzParameters } from '../../helpers/fuzz';
import { frame, MessageReader } from '../../../src/api/grpc/framing';
import { encodeGrpcMessage, GrpcError, parseGrpcTimeout, status } from '../../../src/api/grpc/status';

const MAX = 4096;

/** Splits `buf` at the given fractions into chunks (some empty). */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * (buf.length + 1))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(buf.subarray(last, p));
    last = p;
  }
  out.push(buf.subarray(last));
  return out;
}

const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 });

describe('MessageReader (gRPC length-prefixed messages)', () => {
  it('messages framed and cut anywhere come back whole, in order, and nothing is left over', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: MAX }), { maxLength: 8 }), cuts, (payloads, at) => {
        const reader = new MessageReader(MAX);
        const wire = Buffer.concat(payloads.map((p) => frame(Buffer.from(p))));
        const got: Buffer[] = [];
        for (const c of chunked(wire, at)) got.push(...reader.push(c).map((m) => Buffer.from(m)));
        assert.deepEqual(got.map((m) => m.toString('hex')), payloads.map((p) => Buffer.from(p).toString('hex')));
        assert.equal(reader.buffered, 0);
      }),
      fuzzParameters(300, 5000),
    );
  });

  it('any bytes in any chunks: messages no larger than the limit, or a GrpcError; never more held than one message under it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3 * MAX }), cuts, fc.integer({ min: 1, max: 4 }), (bytes, at, maxMessages) => {
        const reader = new MessageReader(MAX);
        for (const c of chunked(Buffer.from(bytes), at)) {
          let out: Buffer[];
          try {
            out = reader.push(c, maxMessages);
          } catch (err) {
            assert.ok(err instanceof GrpcError, `not a GrpcError: ${err}`);
            assert.ok([status.RESOURCE_EXHAUSTED, status.UNIMPLEMENTED, status.INTERNAL].includes(err.code), `code ${err.code}`);
            return;
          }
          assert.ok(out.length <= maxMessages);
          for (const m of out) assert.ok(m.length <= MAX);
          // A partial message is held, never more: memory is bounded by the limit, not by what a prefix claims.
          if (out.length < maxMessages) assert.ok(reader.buffered < 5 + MAX, `holding ${reader.buffered} bytes`);
        }
      }),
      fuzzParameters(300, 5000),
    );
  });

  it('a length prefix over the limit is RESOURCE_EXHAUSTED as soon as the prefix is whole, before its body', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX + 1, max: 0xffffffff }), fc.integer({ min: 0, max: 4 }), (length, split) => {
        const reader = new MessageReader(MAX);
        const prefix = Buffer.alloc(5);
        prefix.writeUInt32BE(length, 1);
        assert.deepEqual(reader.push(prefix.subarray(0, split)), []);
        assert.throws(() => reader.push(prefix.subarray(split)), (e: unknown) => e instanceof GrpcError && e.code === status.RESOURCE_EXHAUSTED && e.message === `received message larger than max (${length} vs. ${MAX} bytes)`);
        assert.ok(reader.buffered <= 5);
      }),
      fuzzParameters(300),
    );
  });
});

describe('grpc-timeout and grpc-message', () => {
  const UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

  it('a well-formed grpc-timeout is its value in milliseconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99_999_999 }), fc.constantFrom(...Object.keys(UNITS)), (n, unit) => {
        assert.equal(parseGrpcTimeout(`${n}${unit}`), n * UNITS[unit]);
      }),
      fuzzParameters(300),
    );
  });

  it('any other header value is no timeout (undefined), never a throw, never NaN or negative', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 12 }), fc.stringMatching(/^-?\d{0,12}[HMSmunx ]?$/)), (text) => {
        const ms = parseGrpcTimeout(text);
        const valid = /^\d{1,8}[HMSmun]$/.test(text);
        if (!valid) assert.equal(ms, undefined, text);
        else assert.ok(Number.isFinite(ms) && ms! >= 0, text);
      }),
      fuzzParameters(300),
    );
  });

  it('grpc-message is printable ASCII and percent-decodes to the message', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (message) => {
        const encoded = encodeGrpcMessage(message);
        assert.match(encoded, /^[\x20-\x7e]*$/);
        assert.equal(decodeURIComponent(encoded), message);
      }),
      fuzzParameters(300),
    );
  });
});

describe('MessageReader with messages larger than a chunk (a real Envoy sends its ~60 KB first request in 16 KB frames)', () => {
  /** A byte string cut at the given points (each taken modulo the length). */
  function cut(bytes: Buffer, points: number[]): Buffer[] {
    const at = [...new Set(points.map((p) => (bytes.length ? p % bytes.length : 0)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let from = 0;
    for (const p of [...at, bytes.length]) {
      if (p > from) out.push(bytes.subarray(from, p));
      from = p;
    }
    return out;
  }

  const message = fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 1000, maxLength: 70_000 })).map((u) => Buffer.from(u));

  it('messages up to 70 KB, cut into chunks anywhere, come back whole and in order, with nothing left over', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 30 }), (messages, points) => {
        const reader = new MessageReader(1 << 20);
        const got: Buffer[] = [];
        for (const chunk of cut(Buffer.concat(messages.map(frame)), points)) for (const m of reader.push(chunk)) got.push(Buffer.from(m));
        assert.deepEqual(got, messages);
        assert.equal(reader.buffered, 0);
      }),
      fuzzParameters(300, 2000),
    );
  });

  it('an unfinished message is counted as buffered', () => {
    fc.assert(
      fc.property(message, fc.nat(), (m, p) => {
        const framed = frame(m);
        const reader = new MessageReader(1 << 20);
        const cutAt = p % framed.length;
        if (cutAt > 0) assert.deepEqual(reader.push(framed.subarray(0, cutAt)), []);
        assert.equal(reader.buffered, cutAt);
      }),
      fuzzParameters(300, 2000),
    );
  });
});
