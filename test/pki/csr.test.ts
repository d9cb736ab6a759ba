import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createCsr, CsrError, CsrRule, parseAndValidateCsr } from '../../src/pki/csr';
import { workloadIdentity } from '../../src/pki/identity';
import { checkBundle } from '../../src/pki/bundle';
import { generateKeyPair, generateSigningKeyPair, privateKeyFromPem, spkiDer } from '../../src/pki/keys';
import { fromPem, toPem } from '../../src/pki/pem';
import { OID } from '../../src/pki/x509';
import { seq, bool } from '../../src/pki/der';
import { testCa } from '../helpers/pki';

const ID = 'spiffe://cluster.local/ns/prod/sa/api';
const key = generateKeyPair().privateKey;
const ca = testCa();
const identity = workloadIdentity('cluster.local', 'prod', 'api');

test('a well-formed CSR from our agent passes and is signed with the caller identity', () => {
  const csr = createCsr({ key, uris: [ID] });
  assert.deepEqual(parseAndValidateCsr(csr, [ID]).uris, [ID]);
  const issued = ca.signCsr(csr, identity);
  assert.match(issued.certPem, /BEGIN CERTIFICATE/);
});

test('openssl reads our CSR and a CSR made by openssl passes validation', () => {
  const csr = createCsr({ key, uris: [ID] });
  assert.match(execFileSync('openssl', ['req', '-noout', '-verify', '-text'], { input: csr, encoding: 'utf8' }), /URI:spiffe:\/\/cluster.local\/ns\/prod\/sa\/api/);
  const opensslCsr = execFileSync(
    'openssl',
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/', '-addext', `subjectAltName=URI:${ID}`],
    { encoding: 'utf8' },
  );
  assert.deepEqual(parseAndValidateCsr(opensslCsr, [ID]).uris, [ID]);
});

const cases: Array<{ rule: CsrRule; name: string; csr: () => string | Buffer; message: RegExp }> = [
  { rule: 'malformed', name: 'not PEM at all', csr: () => 'hello', message: /no "CERTIFICATE REQUEST" PEM block/ },
  { rule: 'malformed', name: 'truncated DER', csr: () => toPem('CERTIFICATE REQUEST', fromPem(createCsr({ key, uris: [ID] }), 'CERTIFICATE REQUEST').subarray(0, 60)), message: /not valid DER/ },
  {
    rule: 'signature',
    name: 'signature does not verify',
    csr: () => {
      const der = Buffer.from(fromPem(createCsr({ key, uris: [ID] }), 'CERTIFICATE REQUEST'));
      der[der.length - 5] ^= 0xff;
      return toPem('CERTIFICATE REQUEST', der);
    },
    message: /signature does not verify/,
  },
  { rule: 'key-type', name: 'RSA 1024 key', csr: () => createCsr({ key: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey, uris: [ID] }), message: /not allowed; use EC P-256/ },
  { rule: 'common-name', name: 'a CommonName', csr: () => createCsr({ key, uris: [ID], commonName: 'api.prod' }), message: /must not carry a CommonName/ },
  { rule: 'dns-ip-email-san', name: 'a DNS SAN', csr: () => createCsr({ key, uris: [ID], dnsNames: ['api.prod.svc'] }), message: /must not request DNS, IP, email/ },
  {
    rule: 'extension',
    name: 'a BasicConstraints CA:true extension',
    csr: () => createCsr({ key, uris: [ID], extraExtensions: [{ oid: OID.basicConstraints, critical: true, value: seq(bool(true)) }] }),
    message: /extension 2\.5\.29\.19 is not allowed/,
  },
  { rule: 'key-usage', name: 'KeyUsage keyCertSign', csr: () => createCsr({ key, uris: [ID], keyUsage: ['digitalSignature', 'keyCertSign'] }), message: /KeyUsage keyCertSign is not allowed/ },
  { rule: 'ext-key-usage', name: 'ExtKeyUsage codeSigning', csr: () => createCsr({ key, uris: [ID], extKeyUsage: [OID.serverAuth, '1.3.6.1.5.5.7.3.3'] }), message: /ExtKeyUsage 1\.3\.6\.1\.5\.5\.7\.3\.3 is not allowed/ },
  { rule: 'identity', name: 'another identity (forged SAN)', csr: () => createCsr({ key, uris: ['spiffe://cluster.local/ns/prod/sa/admin'] }), message: /asks for spiffe:\/\/cluster.local\/ns\/prod\/sa\/admin but the caller is spiffe:\/\/cluster.local\/ns\/prod\/sa\/api/ },
  { rule: 'identity', name: 'two URI SANs', csr: () => createCsr({ key, uris: [ID, 'spiffe://cluster.local/ns/prod/sa/admin'] }), message: /a CSR may only name the caller's own identity/ },
  { rule: 'identity', name: 'no URI SAN', csr: () => createCsr({ key, uris: [] }), message: /asks for no URI SAN/ },
];

for (const c of cases) {
  test(`strict CSR validation refuses ${c.name} (${c.rule}) and issues nothing`, () => {
    const csr = c.csr();
    let issued: unknown;
    assert.throws(
      () => {
        issued = ca.signCsr(csr, identity);
      },
      (err: unknown) => {
        assert.ok(err instanceof CsrError, `expected CsrError, got ${err}`);
        assert.equal(err.rule, c.rule);
        assert.match(err.message, c.message);
        assert.ok(!err.message.includes('\n'), 'one-line message');
        return true;
      },
    );
    assert.equal(issued, undefined);
  });
}

test('the identity comes from the caller: a CSR naming nobody in particular cannot pick its SAN', () => {
  // Even a CSR whose SAN matches a *different* caller is refused for this caller.
  const forOther = createCsr({ key, uris: ['spiffe://cluster.local/ns/other/sa/api'] });
  assert.throws(() => ca.signCsr(forOther, identity), /caller is spiffe:\/\/cluster.local\/ns\/prod\/sa\/api/);
});

test('a key made with its signer (the SDS agent’s): openssl accepts its PEM and CSR, the CSR carries its SPKI, the bundle check matches it without parsing the PEM', () => {
  for (const alg of ['ec-p256', 'rsa-2048'] as const) {
    const made = generateSigningKeyPair(alg);
    const csr = createCsr({ key: made, uris: [ID] });
    const parsed = parseAndValidateCsr(csr, [ID]);
    assert.ok(parsed.spki.equals(made.spki), alg);
    assert.ok(spkiDer(privateKeyFromPem(made.privateKeyPem)).equals(made.spki), `${alg}: the PEM is the same key`);
    assert.match(execFileSync('openssl', ['req', '-verify', '-noout'], { input: csr, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }) + '', /^$|verify OK/i);
    const issued = ca.signCsr(csr, identity);
    const certChainPem = issued.certPem + issued.intermediatePems.join('');
    assert.deepEqual(checkBundle({ certChainPem, keyPem: made.privateKeyPem }, { trustedRootPem: ca.rootCertPem, expected: identity, keySpki: made.spki }).problems, []);
    const other = generateSigningKeyPair(alg);
    assert.deepEqual(checkBundle({ certChainPem, keyPem: other.privateKeyPem }, { trustedRootPem: ca.rootCertPem, expected: identity, keySpki: other.spki }).problems, ['the private key does not match the certificate']);
  }
});
