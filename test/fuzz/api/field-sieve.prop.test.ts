/**
 * Properties of the field sieve (src/api/field-sieve.ts) and of the framing that uses it: a
 * message cut into chunks anywhere comes out as the same message with exactly the planned fields
 * (kept ones verbatim and in order, planned sub-messages re-measured); hostile bytes fail only
 * with ProtoDecodeError; through MessageReader, a large Envoy-like DiscoveryRequest decodes to
 * what the whole message decodes to.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { DISCOVERY_REQUEST_FIELDS, discoveryCodec } from '../../../src/api/discovery';
import { envoyProtoRoot, SDS_PROTO_FILES } from '../../../src/api/envoy-protos';
import { FieldPlan, MessageSieve } from '../../../src/api/field-sieve';
import { frame, MessageReader } from '../../../src/api/grpc/framing';
import { ProtoDecodeError } from '../../../src/api/wire';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';

// --- a small model of messages: fields 1-6 scalars or bytes, 7-9 sub-messages ---

/** `long`: a 10-byte varint as negative int32/int64 values are written, beyond what a JS number holds. */
type Field = { n: number; kind: 'varint'; v: number } | { n: number; kind: 'fixed32' | 'fixed64' | 'bytes' | 'long'; v: Buffer } | { n: number; kind: 'msg'; v: Field[] };

function varint(v: number): Buffer {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}
const WIRE_OF = { varint: 0, long: 0, fixed64: 1, bytes: 2, msg: 2, fixed32: 5 } as const;

function encode(fields: Field[]): Buffer {
  return Buffer.concat(
    fields.map((f) => {
      const key = varint(f.n * 8 + WIRE_OF[f.kind]);
      if (f.kind === 'varint') return Buffer.concat([key, varint(f.v)]);
      if (f.kind === 'fixed32' || f.kind === 'fixed64' || f.kind === 'long') return Buffer.concat([key, f.v]);
      const body = f.kind === 'msg' ? encode(f.v) : f.v;
      return Buffer.concat([key, varint(body.length), body]);
    }),
  );
}

/** What the sieve must give: the planned fields only. */
function filtered(fields: Field[], plan: FieldPlan): Field[] {
  return fields.flatMap((f): Field[] => {
    const p = plan.get(f.n);
    if (p === undefined) return [];
    if (p === true || f.kind !== 'msg') return [f];
    return [{ n: f.n, kind: 'msg', v: filtered(f.v, p) }];
  });
}

const scalar = (n: number): fc.Arbitrary<Field> =>
  fc.oneof(
    fc.oneof(fc.nat(), fc.maxSafeNat()).map((v): Field => ({ n, kind: 'varint', v })),
    fc.uint8Array({ minLength: 4, maxLength: 4 }).map((v): Field => ({ n, kind: 'fixed32', v: Buffer.from(v) })),
    fc.uint8Array({ minLength: 9, maxLength: 9 }).map((v): Field => ({ n, kind: 'long', v: Buffer.from([...v.map((b) => b | 0x80), 0x01]) })),
    fc.uint8Array({ minLength: 8, maxLength: 8 }).map((v): Field => ({ n, kind: 'fixed64', v: Buffer.from(v) })),
    fc.uint8Array({ maxLength: 300 }).map((v): Field => ({ n, kind: 'bytes', v: Buffer.from(v) })),
  );
const message: fc.Arbitrary<Field[]> = fc.letrec((tie) => ({
  msg: fc.array(
    fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.integer({ min: 1, max: 6 }).chain(scalar), fc.tuple(fc.integer({ min: 7, max: 9 }), tie('msg')).map(([n, v]): Field => ({ n, kind: 'msg', v: v as Field[] }))),
    { maxLength: 12 },
  ),
})).msg as fc.Arbitrary<Field[]>;
const plan: fc.Arbitrary<FieldPlan> = fc.letrec((tie) => ({
  plan: fc
    .tuple(fc.subarray([1, 2, 3, 4, 5, 6]), fc.array(fc.tuple(fc.integer({ min: 7, max: 9 }), fc.oneof({ depthSize: 'small' }, fc.constant(true as const), tie('plan'))), { maxLength: 3 }))
    .map(([scalars, nested]) => new Map<number, true | FieldPlan>([...scalars.map((n) => [n, true] as const), ...(nested as Array<[number, true | FieldPlan]>)])),
})).plan as fc.Arbitrary<FieldPlan>;

/** Feeds `bytes` to a sieve cut at the given points. */
function sieve(p: FieldPlan, bytes: Buffer, points: number[]): Buffer {
  const s = new MessageSieve(p, bytes.length);
  const at = [...new Set(points.map((x) => (bytes.length ? x % bytes.length : 0)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...at, bytes.length]) {
    if (to > from) assert.equal(s.push(bytes.subarray(from, to)), to - from);
    from = Math.max(from, to);
  }
  assert.ok(s.done, 'done once every byte is in');
  return s.result();
}

it('the sieve gives the same message with the planned fields only, wherever the chunks are cut', () => {
  fc.assert(
    fc.property(message, plan, fc.array(fc.nat(), { maxLength: 40 }), (fields, p, points) => {
      assert.deepEqual(sieve(p, encode(fields), points), encode(filtered(fields, p)));
    }),
    fuzzParameters(500, 5000),
  );
});

it('the sieve takes no byte beyond the message', () => {
  fc.assert(
    fc.property(message, plan, fc.uint8Array({ minLength: 1, maxLength: 20 }), (fields, p, extra) => {
      const bytes = encode(fields);
      const s = new MessageSieve(p, bytes.length);
      assert.equal(s.push(Buffer.concat([bytes, Buffer.from(extra)])), bytes.length);
      assert.ok(s.done);
    }),
    fuzzParameters(300, 3000),
  );
});

it('hostile bytes fail only with ProtoDecodeError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), plan, fc.array(fc.nat(), { maxLength: 10 }), (b, p, points) => {
      parseOrOwnError([ProtoDecodeError], () => sieve(p, Buffer.from(b), points));
    }),
    fuzzParameters(1000, 20000),
  );
});

// --- an Envoy-sized DiscoveryRequest through MessageReader with the plan ---

const Request = envoyProtoRoot(SDS_PROTO_FILES).lookupType('envoy.service.discovery.v3.DiscoveryRequest');

it('a large DiscoveryRequest through the reader with its plan decodes as the whole message does', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 600 }),
      fc.string({ maxLength: 20 }),
      fc.array(fc.string({ maxLength: 30 }), { maxLength: 3 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (extensions, id, names, points) => {
        const bytes = Buffer.from(
          Request.encode(
            Request.fromObject({
              version_info: 'v1', resource_names: names, type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', response_nonce: 'n',
              node: {
                id, cluster: '/c', user_agent_name: 'envoy', metadata: { fields: { K: { stringValue: 'v' } } },
                user_agent_build_version: { version: { major_number: 1, minor_number: 40 } },
                extensions: Array.from({ length: extensions }, (_, i) => ({ name: `envoy.filters.http.ext_${i}`, category: 'envoy.filters.http', type_urls: [`envoy.extensions.ext_${i}.v3.Config`] })),
                client_features: ['envoy.lb.does_not_support_overprovisioning'],
              },
            }),
          ).finish(),
        );
        const framed = frame(bytes);
        const reader = new MessageReader(1 << 22, DISCOVERY_REQUEST_FIELDS);
        const got: Buffer[] = [];
        const at = [...new Set(points.map((x) => x % framed.length))].sort((a, b) => a - b);
        let from = 0;
        for (const to of [...at, framed.length]) {
          if (to > from) got.push(...reader.push(framed.subarray(from, to)));
          from = Math.max(from, to);
        }
        assert.equal(got.length, 1);
        assert.equal(reader.buffered, 0);
        if (bytes.length >= 8192 && at.some((x) => x > 5 && x < framed.length)) assert.ok(got[0].length < 2048, `kept ${got[0].length} of ${bytes.length} bytes`);
        assert.deepEqual(discoveryCodec.DiscoveryRequest.decode(got[0]), discoveryCodec.DiscoveryRequest.decode(bytes));
      },
    ),
    fuzzParameters(200, 2000),
  );
});
