/** Properties of parseCertificateDer (src/pki/certificate.ts): hostile certificates, and issued ones read back. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createSelfSignedRoot } from '../../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../../src/ca/config';
import { issueCaDer, issueLeafDer, makeIssuer, parseCertificateDer } from '../../../src/pki/certificate';
import { DerError, TAG } from '../../../src/pki/der';
import { generateEncodedKeyPair, privateKeyFromPem } from '../../../src/pki/keys';
import { OID } from '../../../src/pki/x509';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';
import { applyMutation, cloneTree, derMutation, DerTree, fromTree, randomDerTree, toTree } from './der-mutation';

const secret = createSelfSignedRoot(DEFAULT_CA_CONFIG);
const caKey = privateKeyFromPem(secret.caKeyPem);
const issuer = makeIssuer(secret.caCertPem, caKey);
const subjectSpki = generateEncodedKeyPair().spki;
const leafDer = issueLeafDer(issuer, { spki: subjectSpki, spiffeId: 'spiffe://cluster.local/ns/prod/sa/api', dnsNames: ['api.prod'], ipAddresses: ['10.0.0.1'], notBefore: new Date(), notAfter: new Date(Date.now() + 3600_000) });

/** Whole seconds from year 0 to 9999: UTCTime covers 1950-2049, GeneralizedTime the rest. */
const YEAR_0 = new Date(0).setUTCFullYear(0, 0, 1);
const LAST_SECOND = Date.UTC(9999, 11, 31, 23, 59, 59);
const certDate = fc.integer({ min: YEAR_0, max: LAST_SECOND }).map((ms) => new Date(Math.floor(ms / 1000) * 1000));

/** Calendar time from digits, by the letter: undefined unless every field is in range. */
function referenceTime(tag: number, s: string): Date | undefined {
  const m = tag === TAG.UTC_TIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : tag === TAG.GENERALIZED_TIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number);
  const fullYear = tag === TAG.UTC_TIME ? (year < 50 ? 2000 + year : 1900 + year) : year;
  const leap = fullYear % 4 === 0 && (fullYear % 100 !== 0 || fullYear % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  if (days === undefined || day < 1 || day > days || hour > 23 || minute > 59 || second > 59) return undefined;
  const d = new Date(0);
  d.setUTCFullYear(fullYear, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  return d;
}

const two = (max: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(2, '0'));
const timeText = fc.oneof(
  fc.tuple(two(99), two(19), two(39), two(29), two(69), two(69)).map((p) => ({ tag: TAG.UTC_TIME, text: `${p.join('')}Z` })),
  fc.tuple(fc.integer({ min: 0, max: 9999 }), two(19), two(39), two(29), two(69), two(69)).map(([y, ...p]) => ({ tag: TAG.GENERALIZED_TIME, text: `${String(y).padStart(4, '0')}${p.join('')}Z` })),
  fc.tuple(fc.constantFrom(TAG.UTF8_STRING, TAG.OCTET_STRING, TAG.INTEGER), fc.stringMatching(/^\d{12}(\d\d)?Z$/)).map(([tag, text]) => ({ tag, text })),
  fc.record({ tag: fc.constantFrom(TAG.UTC_TIME, TAG.GENERALIZED_TIME, TAG.UTF8_STRING), text: fc.string({ maxLength: 16 }) }),
);

describe('certificate parser properties', () => {
  it('an issued leaf reads back with the serial, validity, key, SANs and usages it was issued with', () => {
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
    const ascii = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 40 });
    fc.assert(
      fc.property(
        ascii.map((p) => `spiffe://cluster.local/${p}`),
        fc.array(ascii, { maxLength: 3 }),
        fc.array(ipv4, { maxLength: 2 }),
        certDate,
        certDate,
        fc.uint8Array({ minLength: 1, maxLength: 20 }).map((u) => Buffer.from(u)),
        (spiffeId, dnsNames, ipAddresses, notBefore, notAfter, serial) => {
          const c = parseCertificateDer(issueLeafDer(issuer, { spki: subjectSpki, spiffeId, dnsNames, ipAddresses, notBefore, notAfter, serial }));
          assert.equal(BigInt(`0x${c.serialHex}`), BigInt(`0x${serial.toString('hex')}`));
          assert.deepEqual(c.issuer, [[OID.organization, DEFAULT_CA_CONFIG.trustDomain]]);
          assert.deepEqual(c.subject, []);
          assert.equal(c.notBefore.getTime(), notBefore.getTime());
          assert.equal(c.notAfter.getTime(), Math.min(notAfter.getTime(), issuer.notAfter.getTime()));
          assert.ok(c.spkiDer.equals(subjectSpki));
          assert.deepEqual(c.san, { uris: [spiffeId], dnsNames, ipAddresses, emails: [], others: [] });
          assert.deepEqual(c.keyUsage, new Set(['digitalSignature', 'keyEncipherment']));
          assert.deepEqual(c.extKeyUsage, [OID.serverAuth, OID.clientAuth]);
          assert.equal(c.isCa, false);
        },
      ),
      fuzzParameters(100),
    );
  });

  it('a CA certificate reads back as a CA with its organization, any Unicode', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }), fc.option(fc.nat(10), { nil: undefined }), certDate, (organization, pathLen, notBefore) => {
        const notAfter = new Date(Math.min(notBefore.getTime() + 86400_000, LAST_SECOND));
        const c = parseCertificateDer(issueCaDer({ selfSignKey: caKey }, { organization, spki: subjectSpki, notBefore, notAfter, pathLen }));
        assert.deepEqual(c.subject, [[OID.organization, organization]]);
        assert.deepEqual(c.issuer, c.subject);
        assert.equal(c.isCa, true);
        assert.deepEqual(c.keyUsage, new Set(['keyCertSign', 'cRLSign']));
        assert.equal(c.notBefore.getTime(), notBefore.getTime());
      }),
      fuzzParameters(100),
    );
  });

  it('a mutated certificate: a DerError or a parse of exactly those bytes, never a TypeError', () => {
    const trees = [toTree(leafDer), toTree(issuer.certDer)];
    fc.assert(
      fc.property(fc.nat(1), derMutation, (which, m) => {
        const b = applyMutation(trees[which], m);
        const r = parseOrOwnError([DerError], () => parseCertificateDer(b));
        if ('value' in r) assert.equal(r.value.der, b);
      }),
      fuzzParameters(500),
    );
  });

  it('random bytes and random DER are refused with a DerError', () => {
    const input = fc.oneof(fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)), randomDerTree.map(fromTree));
    fc.assert(
      fc.property(input, (b) => {
        parseOrOwnError([DerError], () => parseCertificateDer(b));
      }),
      fuzzParameters(300),
    );
  });

  it('a validity time is read as exactly the calendar time its digits spell, or refused with a DerError', () => {
    const original = toTree(leafDer);
    fc.assert(
      fc.property(timeText, fc.boolean(), ({ tag, text }, notAfter) => {
        const tree = cloneTree(original);
        const validity = tree.children![0].children![4];
        validity.children![notAfter ? 1 : 0] = { tag, content: Buffer.from(text, 'latin1') } as DerTree;
        const want = referenceTime(tag, text);
        const r = parseOrOwnError([DerError], () => parseCertificateDer(fromTree(tree)));
        if (want === undefined) assert.ok('error' in r, `accepted ${tag.toString(16)} "${text}"`);
        else {
          assert.ok('value' in r, `refused ${tag.toString(16)} "${text}": ${'error' in r ? r.error.message : ''}`);
          assert.equal((notAfter ? r.value.notAfter : r.value.notBefore).toISOString(), want.toISOString());
        }
      }),
      fuzzParameters(500),
    );
  });
});
