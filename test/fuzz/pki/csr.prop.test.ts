/** Properties of parseAndValidateCsr and csrDer (src/pki/csr.ts): hostile CSRs, and our own read back. */
import assert from 'node:assert/strict';
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { children, readWhole } from '../../../src/pki/der';
import { createCsr, csrDer, CsrError, parseAndValidateCsr } from '../../../src/pki/csr';
import { generateKeyPair, spkiDer } from '../../../src/pki/keys';
import { fromPem, toPem } from '../../../src/pki/pem';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';
import { applyMutation, derMutation, fromTree, randomDerTree, toTree } from './der-mutation';

const keys: Array<[string, KeyObject]> = [
  ['P-256', generateKeyPair('ec-p256').privateKey],
  ['P-384', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey],
  ['RSA 2048', generateKeyPair('rsa-2048').privateKey],
];
const ID = 'spiffe://cluster.local/ns/prod/sa/api';
const uriChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-._~/%:@'.split(''));
const spiffeUri = fc.string({ unit: uriChar, minLength: 1, maxLength: 60 }).map((p) => `spiffe://cluster.local/${p}`);

/** The signed part of a CSR, or undefined when the bytes do not even have one. */
function certificationRequestInfo(der: Buffer): Buffer | undefined {
  try {
    return children(readWhole(der, 'CSR'))[0]?.raw;
  } catch {
    return undefined;
  }
}

describe('CSR parser properties', () => {
  it('createCsr -> parseAndValidateCsr gives back the URIs and the SPKI, for every key type', () => {
    fc.assert(
      fc.property(fc.nat(keys.length - 1), fc.uniqueArray(spiffeUri, { minLength: 1, maxLength: 3 }), fc.boolean(), (k, uris, asDer) => {
        const key = keys[k][1];
        const pem = createCsr({ key, uris });
        const input = asDer ? fromPem(pem, 'CERTIFICATE REQUEST') : pem;
        const parsed = parseAndValidateCsr(input, [...uris].reverse());
        assert.deepEqual(parsed.uris, uris);
        assert.ok(parsed.spki.equals(spkiDer(key)));
      }),
      fuzzParameters(60),
    );
  });

  // For each key type: a mutated CSR is refused with a CsrError, or it still carries the exact
  // CertificationRequestInfo its key signed (a change elsewhere, such as the BIT STRING's unused-bits byte).
  for (const [name, key] of keys) {
    it(`a mutated ${name} CSR: a CsrError, or the very request its key signed`, () => {
      const der = fromPem(createCsr({ key, uris: [ID] }), 'CERTIFICATE REQUEST');
      const signedInfo = certificationRequestInfo(der)!;
      const tree = toTree(der);
      fc.assert(
        fc.property(derMutation, fc.boolean(), (m, asPem) => {
          const b = applyMutation(tree, m);
          const r = parseOrOwnError([CsrError], () => parseAndValidateCsr(asPem ? toPem('CERTIFICATE REQUEST', b) : b));
          if ('error' in r) return;
          assert.ok(certificationRequestInfo(b)?.equals(signedInfo), `accepted a CSR whose signed part changed: ${b.toString('hex')}`);
          assert.deepEqual(r.value.uris, [ID]);
          assert.ok(r.value.spki.equals(spkiDer(key)));
        }),
        fuzzParameters(name === 'RSA 2048' ? 100 : 300),
      );
    });
  }

  it('random bytes, random DER and random text are refused with a CsrError', () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
      randomDerTree.map(fromTree),
      randomDerTree.map((t) => toPem('CERTIFICATE REQUEST', fromTree(t))),
      fc.string({ maxLength: 200 }),
    );
    fc.assert(
      fc.property(input, (csr) => {
        const r = parseOrOwnError([CsrError], () => parseAndValidateCsr(csr));
        assert.ok('error' in r, 'a random input was accepted as a CSR');
      }),
      fuzzParameters(300),
    );
  });

  it('csrDer: DER bytes as they are, the one CSR block of a PEM, or a CsrError (malformed)', () => {
    const block = fc.tuple(fc.constantFrom('CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST', 'CERTIFICATE'), fc.uint8Array({ maxLength: 40 })).map(([label, u]) => toPem(label, Buffer.from(u)));
    const input = fc.oneof(fc.string({ maxLength: 80 }), fc.array(fc.oneof(block, fc.string({ maxLength: 10 })), { maxLength: 3 }).map((p) => p.join('')), fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)));
    fc.assert(
      fc.property(input, (x) => {
        const r = parseOrOwnError([CsrError], () => csrDer(x));
        if ('error' in r) assert.equal((r.error as CsrError).rule, 'malformed');
        else if (Buffer.isBuffer(x) && x[0] === 0x30) assert.equal(r.value, x);
        else assert.ok(Buffer.isBuffer(r.value));
      }),
      fuzzParameters(300),
    );
  });
});
