/** Inputs the certificate parser properties found, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { issueLeafDer, makeIssuer, parseCertificateDer } from '../../../src/pki/certificate';
import { DerError, TAG } from '../../../src/pki/der';
import { generateEncodedKeyPair, privateKeyFromPem } from '../../../src/pki/keys';
import { createSelfSignedRoot } from '../../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../../src/ca/config';
import { DerTree, fromTree, toTree } from './der-mutation';

const secret = createSelfSignedRoot(DEFAULT_CA_CONFIG);
const issuer = makeIssuer(secret.caCertPem, privateKeyFromPem(secret.caKeyPem));
const leaf = () => toTree(issueLeafDer(issuer, { spki: generateEncodedKeyPair().spki, spiffeId: 'spiffe://cluster.local/ns/a/sa/b', notBefore: new Date(), notAfter: new Date(Date.now() + 3600_000) }));
/** TBSCertificate fields: version, serial, signature, issuer, validity, subject, spki, [3] extensions. */
const tbsOf = (cert: DerTree) => cert.children![0].children!;

function refusedWith(t: DerTree, message: RegExp): void {
  assert.throws(() => parseCertificateDer(fromTree(t)), (e) => e instanceof DerError && message.test(e.message));
}

describe('certificate parser: inputs the properties found', () => {
  it('a validity with only notBefore is a DerError, not a TypeError', () => {
    const cert = leaf();
    tbsOf(cert)[4].children!.pop();
    refusedWith(cert, /^notAfter: missing$/);
  });

  it('an empty [3] extensions wrapper is a DerError, not a TypeError', () => {
    const cert = leaf();
    tbsOf(cert)[7].children = [];
    refusedWith(cert, /^extensions: missing$/);
  });

  it('a time that is not digits is a DerError (it was a plain Error), message kept', () => {
    const cert = leaf();
    tbsOf(cert)[4].children![0] = { tag: TAG.UTC_TIME, content: Buffer.alloc(0) };
    refusedWith(cert, /^bad certificate time ""$/);
  });

  it('a time with a field out of range is refused, not rolled over into another time', () => {
    // GeneralizedTime 20240000000000Z (month 00) used to read as 2023-12-31; UTCTime 240230... as March 1
    for (const [tag, text] of [[TAG.GENERALIZED_TIME, '20240000000000Z'], [TAG.UTC_TIME, '240230120000Z'], [TAG.UTC_TIME, '241301000000Z'], [TAG.UTC_TIME, '240101240000Z'], [TAG.UTC_TIME, '240101235960Z']] as const) {
      const cert = leaf();
      tbsOf(cert)[4].children![0] = { tag, content: Buffer.from(text, 'latin1') };
      refusedWith(cert, new RegExp(`^bad certificate time "${text}"$`));
    }
    const cert = leaf();
    tbsOf(cert)[4].children![0] = { tag: TAG.UTC_TIME, content: Buffer.from('240229235959Z', 'latin1') };
    assert.equal(parseCertificateDer(fromTree(cert)).notBefore.toISOString(), '2024-02-29T23:59:59.000Z');
  });

  it('a GeneralizedTime in the years 0000-0099 is read as that year, not as 19xx', () => {
    // 00991231235959Z used to read as 1999-12-31
    const cert = leaf();
    tbsOf(cert)[4].children![0] = { tag: TAG.GENERALIZED_TIME, content: Buffer.from('00991231235959Z', 'latin1') };
    assert.equal(parseCertificateDer(fromTree(cert)).notBefore.toISOString(), '0099-12-31T23:59:59.000Z');
    tbsOf(cert)[4].children![0] = { tag: TAG.GENERALIZED_TIME, content: Buffer.from('00000229000000Z', 'latin1') }; // 0000 is a leap year, 1900 is not
    assert.equal(parseCertificateDer(fromTree(cert)).notBefore.toISOString(), '0000-02-29T00:00:00.000Z');
  });

  it('a time under a tag that is not UTCTime or GeneralizedTime is refused', () => {
    // a UTF8String "00000307000000Z" used to be read as a GeneralizedTime
    const cert = leaf();
    tbsOf(cert)[4].children![0] = { tag: TAG.UTF8_STRING, content: Buffer.from('20240307000000Z', 'latin1') };
    refusedWith(cert, /^bad certificate time "20240307000000Z"$/);
  });
});
