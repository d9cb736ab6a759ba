import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseCertificatePem, issueCaDer, certificatePem, makeIssuer } from '../../src/pki/certificate';
import { generateEncodedKeyPair, generateKeyPair, privateKeyFromPem, privateKeyToPem, spkiDer } from '../../src/pki/keys';
import { svidProblems, verifyChain, identityOfCertificate } from '../../src/pki/verify';
import { OID } from '../../src/pki/x509';
import { bundleFor, tempDir, testCa } from '../helpers/pki';

test('a leaf meets every X.509-SVID rule, read back by our parser', () => {
  const ca = testCa();
  const before = Date.now();
  const b = bundleFor(ca, 'prod', 'api');
  const leaf = parseCertificatePem(b.certChainPem);
  assert.deepEqual(leaf.san?.uris, ['spiffe://cluster.local/ns/prod/sa/api']);
  assert.deepEqual(leaf.subject, []);
  const ext = (o: string) => leaf.extensions.find((e) => e.oid === o);
  assert.equal(ext(OID.subjectAltName)?.critical, true, 'SAN critical with an empty subject');
  assert.equal(ext(OID.keyUsage)?.critical, true);
  assert.deepEqual([...leaf.keyUsage!].sort(), ['digitalSignature', 'keyEncipherment']);
  assert.deepEqual(leaf.extKeyUsage, [OID.serverAuth, OID.clientAuth]);
  assert.equal(leaf.isCa, false);
  assert.equal(ext(OID.basicConstraints)?.critical, true);
  assert.ok(ext(OID.subjectKeyIdentifier));
  assert.ok(ext(OID.authorityKeyIdentifier));
  assert.equal(leaf.serialHex.length, 32, '128-bit random serial');
  // Back-dated by the clock-skew allowance (one minute by default), whole seconds in X.509.
  assert.ok(leaf.notBefore.getTime() <= before - 59_000 && leaf.notBefore.getTime() >= before - 61_000);
  assert.deepEqual(svidProblems(leaf), []);
  assert.equal(identityOfCertificate(leaf).kind, 'workload');
});

test('two leaves never share a serial', () => {
  const ca = testCa();
  const serials = new Set(Array.from({ length: 50 }, () => parseCertificatePem(bundleFor(ca, 'a', 'b').certChainPem).serialHex));
  assert.equal(serials.size, 50);
});

test('openssl verify accepts the chain and x509 -text shows the SVID extensions', () => {
  const ca = testCa();
  const b = bundleFor(ca, 'prod', 'payments');
  const dir = tempDir();
  writeFileSync(path.join(dir, 'root-cert.pem'), b.rootCertPem);
  writeFileSync(path.join(dir, 'cert-chain.pem'), b.certChainPem);
  const out = execFileSync('openssl', ['verify', '-CAfile', path.join(dir, 'root-cert.pem'), path.join(dir, 'cert-chain.pem')], { encoding: 'utf8' });
  assert.match(out, /cert-chain\.pem: OK/);
  const text = execFileSync('openssl', ['x509', '-in', path.join(dir, 'cert-chain.pem'), '-noout', '-text'], { encoding: 'utf8' });
  assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
  assert.match(text, /X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  assert.match(text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster.local\/ns\/prod\/sa\/payments/);
  assert.match(text, /X509v3 Subject Key Identifier/);
  assert.match(text, /X509v3 Authority Key Identifier/);
  assert.match(text, /Subject: *\n/);
  const rootText = execFileSync('openssl', ['x509', '-noout', '-text'], { input: b.rootCertPem, encoding: 'utf8' });
  assert.match(rootText, /Subject: O = cluster.local/);
  assert.match(rootText, /X509v3 Basic Constraints: critical\s+CA:TRUE/);
  assert.match(rootText, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
});

test('RSA 2048 root and workload keys, written as PKCS#1 as Citadel did', () => {
  const ca = testCa({ keyAlgorithm: 'rsa-2048' });
  const b = bundleFor(ca, 'default', 'default');
  assert.match(b.keyPem, /^-----BEGIN RSA PRIVATE KEY-----/);
  const key = privateKeyFromPem(b.keyPem);
  assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
  assert.equal(verifyChain(b.certChainPem, b.rootCertPem).ok, true);
  assert.equal(new X509Certificate(b.certChainPem).verify(new X509Certificate(b.rootCertPem).publicKey), true);
});

test('keys round-trip through PKCS#8 and PKCS#1 PEM', () => {
  const ec = generateKeyPair('ec-p256');
  assert.deepEqual(spkiDer(privateKeyFromPem(privateKeyToPem(ec.privateKey))), spkiDer(ec.publicKey));
  const rsa = generateKeyPair('rsa-2048');
  const pkcs1 = privateKeyToPem(rsa.privateKey, 'pkcs1');
  assert.match(pkcs1, /BEGIN RSA PRIVATE KEY/);
  assert.deepEqual(spkiDer(privateKeyFromPem(pkcs1)), spkiDer(rsa.publicKey));
  assert.throws(() => privateKeyToPem(ec.privateKey, 'pkcs1'), /only for RSA/);
  assert.throws(() => privateKeyFromPem('not a key'), /expected one PRIVATE KEY PEM block/);
});

test('an intermediate CA chains: leaf -> intermediate -> root', () => {
  const rootKey = generateKeyPair();
  const now = new Date();
  const later = new Date(now.getTime() + 86_400_000 * 30);
  const rootPem = certificatePem(issueCaDer({ selfSignKey: rootKey.privateKey }, { organization: 'example.org', spki: spkiDer(rootKey.publicKey), notBefore: now, notAfter: later }));
  const interKey = generateKeyPair();
  const interPem = certificatePem(issueCaDer(makeIssuer(rootPem, rootKey.privateKey), { organization: 'example.org', spki: spkiDer(interKey.publicKey), notBefore: now, notAfter: later, pathLen: 0 }));
  const inter = parseCertificatePem(interPem);
  assert.equal(inter.isCa, true);
  assert.deepEqual(inter.issuer, [[OID.organization, 'example.org']]);
  assert.equal(verifyChain(interPem, rootPem).ok, true);
  const otherRoot = testCa();
  const bad = verifyChain(interPem, otherRoot.rootCertPem);
  assert.equal(bad.ok, false);
  assert.match(bad.problems[0], /not signed by the given root/);
});

test('an expired leaf fails the chain check with the reason', () => {
  const ca = testCa();
  const b = bundleFor(ca, 'x', 'y', 1000);
  const check = verifyChain(b.certChainPem, b.rootCertPem, new Date(Date.now() + 10_000));
  assert.equal(check.ok, false);
  assert.match(check.problems.join(), /expired/);
});

test('P-256 keys encoded by hand read back in node:crypto and openssl, and match their SPKI', () => {
  for (let i = 0; i < 20; i++) {
    const { privateKeyPem, spki } = generateEncodedKeyPair('ec-p256');
    const key = privateKeyFromPem(privateKeyPem);
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(spkiDer(key), spki);
    assert.match(execFileSync('openssl', ['pkey', '-noout', '-text'], { input: privateKeyPem, encoding: 'utf8' }), /ASN1 OID: prime256v1/);
  }
});
