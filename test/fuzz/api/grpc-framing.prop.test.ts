/**
 * Properties of gRPC's length-prefixed framing (src/api/grpc/framing.ts): whatever way a byte
 * stream of messages is cut into chunks, the reader gives back exactly those messages, in order;
 * a prefix over the limit or with a compression flag is refused, whatever chunk it arrives in.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { frame, MessageReader } from '../../../src/api/grpc/framing';
import { GrpcError } from '../../../src/api/grpc/status';
import { fuzzParameters } from '../../helpers/fuzz';

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

it('messages cut into chunks anywhere come back whole and in order, with nothing left over', () => {
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

it('a length over the limit or a compressed message is refused, wherever the chunks are cut', () => {
  fc.assert(
    fc.property(fc.constantFrom('too-big', 'compressed'), fc.array(message, { maxLength: 3 }), fc.array(fc.nat(), { maxLength: 10 }), (bad, before, points) => {
      const head = Buffer.from([bad === 'compressed' ? 1 : 0, 0, 0, 0, 0]);
      head.writeUInt32BE(bad === 'too-big' ? 2_000_000 : 3, 1);
      const bytes = Buffer.concat([...before.map(frame), head, Buffer.alloc(3)]);
      const reader = new MessageReader(1 << 20);
      assert.throws(() => {
        for (const chunk of cut(bytes, points)) reader.push(chunk);
      }, (err: unknown) => err instanceof GrpcError && (bad === 'too-big' ? /larger than max/ : /compressed/).test(err.message));
    }),
    fuzzParameters(300, 2000),
  );
});
