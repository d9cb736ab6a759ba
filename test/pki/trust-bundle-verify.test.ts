/**
 * A chain checked against a trust bundle (root-cert.pem or --ca-root with several roots): it must
 * reach one of them, and only that root's validity counts, so that a bundle keeping an expired
 * old root still verifies the certificates under the current one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CertificateAuthority, createSelfSignedRoot } from '../../src/ca/authority';
import { certificatePem, issueCaDer } from '../../src/pki/certificate';
import { privateKeyFromPem, spkiDer } from '../../src/pki/keys';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { checkBundle } from '../../src/pki/bundle';
import { verifyChain } from '../../src/pki/verify';
import { workloadIdentity } from '../../src/pki/identity';
import { testCa } from '../helpers/pki';

const DAY = 86_400_000;
const id = workloadIdentity('cluster.local', 'shop', 'payments');

describe('verifyChain against a bundle of roots', () => {
  const current = testCa();
  const other = testCa();
  const expired = createSelfSignedRoot({ ...DEFAULT_CA_CONFIG, selfSignedCaCertTtlMs: DAY }, new Date(Date.now() - 10 * DAY)).caCertPem;
  const leaf = current.issueKeyCertBundle(id);

  it('a leaf verifies against a bundle holding its root in any position', () => {
    for (const bundle of [current.rootCertPem + other.rootCertPem, other.rootCertPem + current.rootCertPem]) {
      assert.deepEqual(checkBundle({ certChainPem: leaf.certChainPem, keyPem: leaf.keyPem, rootCertPem: bundle }, { expected: id }).problems, []);
    }
  });

  it('a bundle without the leaf’s root is refused', () => {
    assert.deepEqual(verifyChain(leaf.certChainPem, other.rootCertPem + expired).problems, ['the certificate is not signed by the given root']);
  });

  it('another root of the bundle having expired does not matter; the root reached having expired does', () => {
    assert.deepEqual(verifyChain(leaf.certChainPem, expired + current.rootCertPem).problems, []);
    const own = verifyChain(expired, expired + current.rootCertPem);
    assert.equal(own.ok, false);
    assert.match(own.problems.join('; '), /expired at/);
  });

  it('an expired root and its re-issued copy (same name and key) in one bundle: the chain reaches the valid copy, in either order', () => {
    const secret = createSelfSignedRoot({ ...DEFAULT_CA_CONFIG, selfSignedCaCertTtlMs: DAY }, new Date(Date.now() - 10 * DAY));
    const key = privateKeyFromPem(secret.caKeyPem);
    const renewed = certificatePem(
      issueCaDer({ selfSignKey: key }, { organization: DEFAULT_CA_CONFIG.trustDomain, spki: spkiDer(key), notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 30 * DAY) }),
    );
    const ca = CertificateAuthority.fromSecret({ caCertPem: renewed, caKeyPem: secret.caKeyPem }, DEFAULT_CA_CONFIG);
    const under = ca.issueKeyCertBundle(id);
    for (const bundle of [secret.caCertPem + renewed, renewed + secret.caCertPem]) assert.deepEqual(verifyChain(under.certChainPem, bundle).problems, []);
    assert.match(verifyChain(under.certChainPem, secret.caCertPem).problems.join('; '), /expired at/, 'the expired copy alone does not do');
  });
});
