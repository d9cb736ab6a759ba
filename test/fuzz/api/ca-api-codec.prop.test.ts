/**
 * Properties of the hand-written protobuf codec in src/api/ca-api.ts: hostile wire bytes, encode ->
 * decode round trips for every message, and agreement with protobufjs reading the .proto files.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import * as protobuf from 'protobufjs';
import { AttestNodeRequest, codec, CsrRequest, CsrResponse, IstioCertificateRequest, PlacementsUpdate, SecretsUpdate } from '../../../src/api/ca-api';
import { PROTO_DIR } from '../../../src/api/protos';
import { ProtoDecodeError } from '../../../src/api/wire';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';

// --- the .proto files as protobufjs reads them (as test/server/proto-wire.test.ts loads them) ---

const GOOGLEAPIS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps', 'googleapis');
const root = new protobuf.Root();
root.resolvePath = (_origin, target) =>
  [PROTO_DIR, GOOGLEAPIS, path.dirname(require.resolve('protobufjs/package.json'))].map((d) => path.join(d, target)).find((p) => fs.existsSync(p)) ?? target;
root.loadSync(['istio/v1/auth/istioca.proto', 'istio/v1/auth/ca_service.proto', 'citadel/v1/node.proto'], { keepCase: false });

// --- random valid messages ---

const str = fc.string({ unit: 'binary', maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 60 }).map((u) => Buffer.from(u));
const int64 = fc.oneof(fc.maxSafeInteger(), fc.integer({ min: -1000, max: 100_000 }));
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const rec = <T>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }, requiredKeys?: Array<keyof T>) =>
  fc.record(shape, { noNullPrototype: true, ...(requiredKeys ? { requiredKeys } : {}) }) as fc.Arbitrary<T>;

const ref = rec({ namespace: str, serviceAccount: str });
const messages = {
  IstioCertificateRequest: rec<IstioCertificateRequest>({ csr: str, subjectId: str, validityDuration: int64 }),
  IstioCertificateResponse: rec({ certChain: fc.array(str, { maxLength: 4 }) }),
  CsrRequest: rec<CsrRequest>({ csrPem: bytes, nodeAgentCredential: bytes, credentialType: str, requestedTtlMinutes: int32 }),
  CsrResponse: rec<CsrResponse>({ isApproved: fc.boolean(), status: rec({ code: int32, message: str }), signedCert: bytes, certChain: bytes }, ['isApproved', 'signedCert', 'certChain']),
  AttestNodeRequest: rec<AttestNodeRequest>({ joinToken: str, host: str, csr: str, validityDuration: int64 }),
  AttestNodeResponse: rec({ certChain: fc.array(str, { maxLength: 4 }) }),
  WatchSecretsRequest: fc.constant({}),
  SecretsUpdate: rec<SecretsUpdate>({
    snapshot: fc.boolean(),
    secrets: fc.array(rec({ namespace: str, serviceAccount: str, certChain: str, key: str, rootCert: str, version: str }), { maxLength: 3 }),
    removed: fc.array(ref, { maxLength: 3 }),
    more: fc.boolean(),
  }),
  WatchPlacementsRequest: fc.constant({}),
  PlacementsUpdate: rec<PlacementsUpdate>({ snapshot: fc.boolean(), placed: fc.array(ref, { maxLength: 3 }), removed: fc.array(ref, { maxLength: 3 }) }),
};
type Name = keyof typeof messages;
const NAMES = Object.keys(messages) as Name[];
const PROTO_TYPE: Record<Name, string> = {
  IstioCertificateRequest: 'istio.v1.auth.IstioCertificateRequest',
  IstioCertificateResponse: 'istio.v1.auth.IstioCertificateResponse',
  CsrRequest: 'istio.v1.auth.CsrRequest',
  CsrResponse: 'istio.v1.auth.CsrResponse',
  AttestNodeRequest: 'citadel.v1.AttestNodeRequest',
  AttestNodeResponse: 'citadel.v1.AttestNodeResponse',
  WatchSecretsRequest: 'citadel.v1.WatchSecretsRequest',
  SecretsUpdate: 'citadel.v1.SecretsUpdate',
  WatchPlacementsRequest: 'citadel.v1.WatchPlacementsRequest',
  PlacementsUpdate: 'citadel.v1.PlacementsUpdate',
};
const anyCodec = (n: Name) => codec[n] as unknown as { encode(m: unknown): Buffer; decode(b: Buffer): unknown };

/** protobufjs's object for `bytes` with every field present, in our shapes (Buffers, numbers). */
function theirs(n: Name, b: Buffer): unknown {
  const T = root.lookupType(PROTO_TYPE[n]);
  const o = T.toObject(T.decode(b), { longs: Number, defaults: true, arrays: true }) as Record<string, unknown>;
  delete o.metadata;
  if (n === 'CsrResponse' && o.status === null) delete o.status;
  if (n === 'CsrResponse' && o.status) delete (o.status as Record<string, unknown>).details; // google.rpc.Status details: not modelled
  for (const [k, v] of Object.entries(o)) if (v instanceof Uint8Array) o[k] = Buffer.from(v);
  return o;
}

// --- random wire bytes: any field numbers, wire types, varints, and lengths that lie ---

interface WireField {
  field: number;
  wire: number;
  varint: bigint;
  payload: Buffer;
  /** written instead of the payload's length */
  length?: bigint;
}

function varint(v: bigint): Buffer {
  let u = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    out.push(Number(u & 0x7fn) | (u >= 0x80n ? 0x80 : 0));
    u >>= 7n;
  } while (u > 0n);
  return Buffer.from(out);
}

function encodeWire(fields: WireField[]): Buffer {
  return Buffer.concat(
    fields.map((f) => {
      const key = varint(BigInt(f.field) * 8n + BigInt(f.wire));
      if (f.wire === 0) return Buffer.concat([key, varint(f.varint)]);
      if (f.wire === 2) return Buffer.concat([key, varint(f.length ?? BigInt(f.payload.length)), f.payload]);
      if (f.wire === 1) return Buffer.concat([key, f.payload.subarray(0, 8)]);
      if (f.wire === 5) return Buffer.concat([key, f.payload.subarray(0, 4)]);
      return key;
    }),
  );
}

const lengthLie = fc.oneof(
  fc.integer({ min: -64, max: -1 }).map(BigInt), // back into the message
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.constantFrom(2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, -(2n ** 31n)),
);
const wireFields: fc.Arbitrary<WireField[]> = fc.letrec<{ fields: WireField[]; field: WireField }>((tie) => ({
  fields: fc.array(tie('field'), { maxLength: 5 }),
  field: fc.record(
    {
      field: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 6 }) }, fc.integer({ min: 0, max: 2 ** 29 - 1 })),
      wire: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 2) }, fc.integer({ min: 0, max: 7 })),
      varint: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }), fc.integer({ min: -2, max: 300 }).map(BigInt)),
      payload: fc.oneof({ depthSize: 'small' }, bytes, fc.constant(Buffer.alloc(0)), tie('fields').map((f) => encodeWire(f as WireField[]))),
      length: fc.option(lengthLie, { nil: undefined, freq: 8 }),
    },
    { requiredKeys: ['field', 'wire', 'varint', 'payload'], noNullPrototype: true },
  ),
})).fields;

describe('gRPC codec properties', () => {
  for (const n of NAMES) {
    it(`${n}: encode -> decode gives back the message`, () => {
      fc.assert(
        fc.property(messages[n], (m) => {
          assert.deepEqual(anyCodec(n).decode(anyCodec(n).encode(m)), m);
        }),
        fuzzParameters(150),
      );
    });

    it(`${n}: decodes what protobufjs encodes from the .proto as protobufjs reads it, and protobufjs reads what we encode`, () => {
      const T = root.lookupType(PROTO_TYPE[n]);
      const metadata = fc.dictionary(fc.string({ maxLength: 8 }), str.map((s) => ({ stringValue: s })), { maxKeys: 3 }).map((fields) => ({ fields }));
      fc.assert(
        fc.property(messages[n], metadata, (m, md) => {
          const theirBytes = Buffer.from(T.encode(T.fromObject(n === 'IstioCertificateRequest' ? { ...m, metadata: md } : m)).finish());
          const ours = anyCodec(n).decode(theirBytes);
          assert.deepEqual(ours, theirs(n, theirBytes));
          assert.deepEqual(ours, m);
          assert.deepEqual(theirs(n, anyCodec(n).encode(m)), m);
        }),
        fuzzParameters(150),
      );
    });

    it(`${n}: random and mutated wire bytes decode to a message or throw ProtoDecodeError`, () => {
      const valid = messages[n].map((m) => anyCodec(n).encode(m));
      const edits = fc.array(fc.record({ at: fc.nat(), del: fc.nat(4), ins: fc.uint8Array({ maxLength: 4 }) }, { noNullPrototype: true }), { minLength: 1, maxLength: 3 });
      const mutated = fc.tuple(valid, edits).map(([b, es]) => {
        for (const e of es) {
          const at = e.at % (b.length + 1);
          b = Buffer.concat([b.subarray(0, at), e.ins, b.subarray(at + e.del)]);
        }
        return b;
      });
      const input = fc.oneof(fc.uint8Array({ maxLength: 80 }).map((u) => Buffer.from(u)), wireFields.map(encodeWire), mutated);
      fc.assert(
        fc.property(input, (b) => {
          const r = parseOrOwnError([ProtoDecodeError], () => anyCodec(n).decode(b));
          if ('value' in r) assert.equal(typeof r.value, 'object');
        }),
        fuzzParameters(400),
      );
    });
  }

  it('a length prefix claiming up to 2^64 bytes is refused without allocating it', () => {
    fc.assert(
      fc.property(fc.constantFrom(...NAMES.filter((n) => n !== 'WatchSecretsRequest' && n !== 'WatchPlacementsRequest')), fc.bigInt({ min: 2n ** 20n, max: 2n ** 64n - 1n }), fc.integer({ min: 1, max: 4 }), (n, claimed, field) => {
        const before = process.memoryUsage().arrayBuffers;
        const b = Buffer.concat([varint(BigInt(field * 8 + 2)), varint(claimed), Buffer.from('short')]);
        const r = parseOrOwnError([ProtoDecodeError], () => anyCodec(n).decode(b));
        assert.ok('error' in r, `a ${claimed}-byte field in ${b.length} bytes was accepted`);
        assert.ok(process.memoryUsage().arrayBuffers - before < 64 << 20);
      }),
      fuzzParameters(100),
    );
  });
});
