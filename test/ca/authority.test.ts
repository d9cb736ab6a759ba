import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { CertificateAuthority, SigningError } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { UserError } from '../../src/common/errors';
import { certificatePem, issueCaDer, makeIssuer } from '../../src/pki/certificate';
import { createCsr } from '../../src/pki/csr';
import { workloadIdentity } from '../../src/pki/identity';
import { generateKeyPair, privateKeyToPem, spkiDer } from '../../src/pki/keys';
import { verifyChain } from '../../src/pki/verify';
import { FileStore } from '../../src/store/file-store';
import { tempDir, testCa } from '../helpers/pki';

const id = workloadIdentity('cluster.local', 'prod', 'api');

test('the self-signed root is created once, persisted as istio-ca-secret and reloaded unchanged', async () => {
  const dir = tempDir();
  const s1 = await FileStore.open(dir);
  const ca1 = await CertificateAuthority.open(s1, DEFAULT_CA_CONFIG);
  const s2 = await FileStore.open(dir);
  const ca2 = await CertificateAuthority.open(s2, DEFAULT_CA_CONFIG);
  assert.equal(ca2.rootCertPem, ca1.rootCertPem);
  const b = ca2.issueKeyCertBundle(id);
  assert.equal(verifyChain(b.certChainPem, ca1.rootCertPem).ok, true);
});

test('TTL policy: default for none or non-positive, cap refused with TTL_ERROR', () => {
  const ca = testCa({ workloadCertTtlMs: 3_600_000, maxWorkloadCertTtlMs: 7_200_000 });
  assert.equal(ca.resolveTtl(undefined), 3_600_000);
  assert.equal(ca.resolveTtl(0), 3_600_000);
  assert.equal(ca.resolveTtl(-5), 3_600_000);
  assert.equal(ca.resolveTtl(60_000), 60_000);
  assert.throws(() => ca.resolveTtl(7_200_001), (e: unknown) => e instanceof SigningError && e.code === 'TTL_ERROR' && /above the maximum/.test(e.message));
  const issued = ca.signCsr(createCsr({ key: generateKeyPair().privateKey, uris: ['spiffe://cluster.local/ns/prod/sa/api'] }), id, 120_000);
  const ms = issued.notAfter.getTime() - issued.notBefore.getTime();
  assert.equal(ms, 120_000 + DEFAULT_CA_CONFIG.clockSkewMs);
});

/** Writes a root -> intermediate (signing) bundle as Citadel's plug-in files. */
function pluggedBundle() {
  const dir = tempDir();
  const now = new Date();
  const later = new Date(now.getTime() + 365 * 86_400_000);
  const rootKey = generateKeyPair();
  const rootPem = certificatePem(issueCaDer({ selfSignKey: rootKey.privateKey }, { organization: 'corp', spki: spkiDer(rootKey.publicKey), notBefore: now, notAfter: later }));
  const key = generateKeyPair();
  const signingPem = certificatePem(issueCaDer(makeIssuer(rootPem, rootKey.privateKey), { organization: 'cluster.local', spki: spkiDer(key.publicKey), notBefore: now, notAfter: later, pathLen: 0 }));
  const files = {
    signingCert: path.join(dir, 'ca-cert.pem'),
    signingKey: path.join(dir, 'ca-key.pem'),
    rootCert: path.join(dir, 'root-cert.pem'),
    certChain: path.join(dir, 'cert-chain.pem'),
  };
  writeFileSync(files.signingCert, signingPem);
  writeFileSync(files.signingKey, privateKeyToPem(key.privateKey));
  writeFileSync(files.rootCert, rootPem);
  writeFileSync(files.certChain, signingPem + rootPem);
  return { dir, files, rootPem, signingPem, rootKey };
}

test('a plugged-in CA signs leaves that openssl verifies through the intermediate', () => {
  const { dir, files } = pluggedBundle();
  const ca = CertificateAuthority.fromFiles({ ...DEFAULT_CA_CONFIG, plugged: files });
  const b = ca.issueKeyCertBundle(id);
  assert.equal(ca.intermediatePems.length, 1);
  assert.equal((b.certChainPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 2, 'cert-chain.pem = leaf + intermediate');
  writeFileSync(path.join(dir, 'leaf-chain.pem'), b.certChainPem);
  writeFileSync(path.join(dir, 'root.pem'), b.rootCertPem);
  const out = execFileSync('openssl', ['verify', '-CAfile', path.join(dir, 'root.pem'), '-untrusted', path.join(dir, 'leaf-chain.pem'), path.join(dir, 'leaf-chain.pem')], { encoding: 'utf8' });
  assert.match(out, /OK/);
});

test('a wrong plugged-in bundle is refused at start with a one-line reason', () => {
  const good = pluggedBundle();
  const other = pluggedBundle();
  const leafDir = tempDir();
  const leaf = testCa().issueKeyCertBundle(id);
  writeFileSync(path.join(leafDir, 'leaf.pem'), leaf.certChainPem);
  writeFileSync(path.join(leafDir, 'leaf-key.pem'), leaf.keyPem);
  const refusals: Array<[string, Partial<typeof good.files>, RegExp]> = [
    ['key does not match', { signingKey: other.files.signingKey }, /--signing-key does not match --signing-cert/],
    ['chain leads elsewhere', { rootCert: other.files.rootCert }, /does not chain to --root-cert/],
    ['signing cert is no CA', { signingCert: path.join(leafDir, 'leaf.pem'), signingKey: path.join(leafDir, 'leaf-key.pem') }, /is not a CA certificate/],
    ['missing file', { rootCert: path.join(leafDir, 'nope.pem') }, /--root-cert .*nope\.pem: cannot read \(ENOENT\)/],
  ];
  for (const [what, change, message] of refusals) {
    assert.throws(
      () => CertificateAuthority.fromFiles({ ...DEFAULT_CA_CONFIG, plugged: { ...good.files, certChain: undefined, ...change } }),
      (e: unknown) => e instanceof UserError && message.test(e.message) && !e.message.includes('\n'),
      what,
    );
  }
});
