/** Properties of the X.509 decoders in src/pki/x509.ts: hostile DER, and encode -> decode round trips. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DerError, seq, TAG } from '../../../src/pki/der';
import {
  decodeExtensions, decodeExtKeyUsage, decodeKeyUsage, decodeName, decodeSubjectAltNames, encodeExtension, encodeExtKeyUsage,
  encodeKeyUsage, encodeName, encodeSubjectAltNames, KEY_USAGE, KeyUsageName, OID,
} from '../../../src/pki/x509';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';
import { DerTree, dottedOid, fromTree, KNOWN_OIDS, randomDerTree } from './der-mutation';

const cons = (tag: number, children: DerTree[]): DerTree => ({ tag, children });
const randomBytes = fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u));

/** Random DER shaped like what each decoder reads, so that the damage is one level down. */
const shaped = {
  name: fc.array(fc.array(fc.array(randomDerTree, { maxLength: 3 }), { maxLength: 2 }), { maxLength: 3 }).map((rdns) =>
    cons(TAG.SEQUENCE, rdns.map((atvs) => cons(TAG.SET, atvs.map((parts) => cons(TAG.SEQUENCE, parts))))),
  ),
  extensions: fc.array(fc.array(randomDerTree, { maxLength: 4 }), { maxLength: 3 }).map((exts) => cons(TAG.SEQUENCE, exts.map((parts) => cons(TAG.SEQUENCE, parts)))),
  sequence: fc.array(randomDerTree, { maxLength: 5 }).map((items) => cons(TAG.SEQUENCE, items)),
  bitString: fc.uint8Array({ maxLength: 4 }).map((u): DerTree => ({ tag: TAG.BIT_STRING, content: Buffer.from(u) })),
};

function input(shape: fc.Arbitrary<DerTree>): fc.Arbitrary<Buffer> {
  return fc.oneof(shape.map(fromTree), randomDerTree.map(fromTree), randomBytes);
}

const decoders: Array<[string, (b: Buffer) => unknown, fc.Arbitrary<Buffer>]> = [
  ['decodeName', decodeName, input(shaped.name)],
  ['decodeExtensions', decodeExtensions, input(shaped.extensions)],
  ['decodeSubjectAltNames', decodeSubjectAltNames, input(shaped.sequence)],
  ['decodeExtKeyUsage', decodeExtKeyUsage, input(shaped.sequence)],
  ['decodeKeyUsage', decodeKeyUsage, input(shaped.bitString)],
];

describe('X.509 decoder properties', () => {
  for (const [name, decode, arb] of decoders) {
    it(`${name} on hostile DER: a value or a DerError, never a TypeError`, () => {
      fc.assert(
        fc.property(arb, (b) => {
          parseOrOwnError([DerError], () => decode(b));
        }),
        fuzzParameters(300),
      );
    });
  }

  it('encodeName -> decodeName gives back every attribute, any Unicode value', () => {
    const rdn = fc.tuple(fc.oneof(fc.constantFrom(OID.commonName, OID.organization), dottedOid), fc.string({ unit: 'binary', maxLength: 40 }));
    fc.assert(
      fc.property(fc.array(rdn, { maxLength: 4 }), (rdns) => {
        assert.deepEqual(decodeName(encodeName(rdns)), rdns);
      }),
      fuzzParameters(200),
    );
  });

  it('encodeSubjectAltNames -> decodeSubjectAltNames gives back URIs, DNS names and IP addresses', () => {
    const latin1 = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 60 });
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
    const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 });
    fc.assert(
      fc.property(fc.array(latin1, { maxLength: 3 }), fc.array(latin1, { maxLength: 3 }), fc.array(ipv4, { maxLength: 2 }), fc.array(ipv6, { maxLength: 2 }), (uris, dnsNames, v4, v6) => {
        const san = decodeSubjectAltNames(encodeSubjectAltNames({ uris, dnsNames, ipAddresses: [...v4, ...v6.map((g) => g.map((x) => x.toString(16)).join(':'))] }));
        assert.deepEqual(san, {
          uris,
          dnsNames,
          ipAddresses: [...v4, ...v6.map((g) => g.map((x) => x.toString(16).padStart(4, '0')).join(''))],
          emails: [],
          others: [],
        });
      }),
      fuzzParameters(200),
    );
  });

  it('encodeKeyUsage -> decodeKeyUsage gives back exactly the usages', () => {
    fc.assert(
      fc.property(fc.subarray(Object.keys(KEY_USAGE) as KeyUsageName[]), (usages) => {
        assert.deepEqual(decodeKeyUsage(encodeKeyUsage(usages)), new Set(usages));
      }),
      fuzzParameters(200),
    );
  });

  it('encodeExtKeyUsage -> decodeExtKeyUsage and encodeExtension -> decodeExtensions give back their OIDs and values', () => {
    const ext = fc.record({ oid: fc.oneof(fc.constantFrom(...KNOWN_OIDS), dottedOid), critical: fc.boolean(), value: randomBytes }, { noNullPrototype: true });
    fc.assert(
      fc.property(fc.array(dottedOid, { maxLength: 4 }), fc.array(ext, { maxLength: 4 }), (ekus, exts) => {
        assert.deepEqual(decodeExtKeyUsage(encodeExtKeyUsage(ekus)), ekus);
        assert.deepEqual(decodeExtensions(seq(...exts.map((e) => encodeExtension(e.oid, e.critical, e.value)))), exts);
      }),
      fuzzParameters(200),
    );
  });
});
