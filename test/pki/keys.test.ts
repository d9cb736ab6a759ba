import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { generateEncodedKeyPair, generateSigningKeyPair, p256SpkiOfPrivateKeyPem, privateKeyFromPem, spkiDer } from '../../src/pki/keys';
import { fromPem, toPem } from '../../src/pki/pem';
import { bitString, contextTag, octets, oid, seq, smallInteger } from '../../src/pki/der';

const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
const slowSpki = (pem: string) => spkiDer(privateKeyFromPem(pem));

test('a P-256 key PEM gives the SPKI node:crypto reads from it, whoever wrote it', () => {
  const sec1 = openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout');
  const pems: Record<string, string> = {
    'our PKCS#8': generateEncodedKeyPair('ec-p256').privateKeyPem,
    'our signing key': generateSigningKeyPair('ec-p256').privateKeyPem,
    'node PKCS#8': generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    'node SEC1': generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'sec1' }) as string,
    'openssl SEC1': sec1,
    'openssl PKCS#8': execFileSync('openssl', ['pkey'], { input: sec1, encoding: 'utf8' }),
    'openssl PKCS#8 without the public key': execFileSync('openssl', ['pkcs8', '-topk8', '-nocrypt'], {
      input: toPem('EC PRIVATE KEY', withoutPublicKey(fromPem(sec1, 'EC PRIVATE KEY'))),
      encoding: 'utf8',
    }),
  };
  for (const [who, pem] of Object.entries(pems)) {
    const fast = p256SpkiOfPrivateKeyPem(pem);
    assert.ok(fast, `${who}: read without OpenSSL's decoders`);
    assert.ok(fast.equals(slowSpki(pem)), `${who}: the same public key`);
  }
});

test('other keys are left to node:crypto; a key whose stated public key is not its own is refused', () => {
  for (const pem of [
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    '-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n',
    'no PEM at all',
  ]) {
    assert.equal(p256SpkiOfPrivateKeyPem(pem), undefined, pem.slice(0, 40));
  }
  const a = fromPem(generateEncodedKeyPair('ec-p256').privateKeyPem, 'PRIVATE KEY');
  const b = fromPem(generateEncodedKeyPair('ec-p256').privateKeyPem, 'PRIVATE KEY');
  // Our PKCS#8 is fixed-size: the scalar at 36..68, the stated point after it. Give a's scalar b's point.
  const forged = Buffer.concat([a.subarray(0, 68), b.subarray(68)]);
  assert.throws(() => p256SpkiOfPrivateKeyPem(toPem('PRIVATE KEY', forged)), /its public key is not the one its private scalar makes/);
  assert.ok(createPrivateKey({ key: toPem('PRIVATE KEY', a), format: 'pem' }));
});

test('a P-256 key of a shape OpenSSL would judge differently is left to OpenSSL, never matched by the fast path', () => {
  const made = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const d = Buffer.from(made.d!, 'base64url');
  const point = Buffer.concat([Buffer.from([0x04]), Buffer.from(made.x!, 'base64url'), Buffer.from(made.y!, 'base64url')]);
  const pkcs8 = (ecPrivateKey: Buffer, ...after: Buffer[]) =>
    toPem('PRIVATE KEY', seq(smallInteger(0), seq(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')), octets(ecPrivateKey), ...after));
  const good = pkcs8(seq(smallInteger(1), octets(d), contextTag(1, true, bitString(point))));
  assert.ok(p256SpkiOfPrivateKeyPem(good)?.equals(slowSpki(good)), 'the well-formed key takes the fast path');
  for (const [what, pem] of [
    ['a trailing element in ECPrivateKey', pkcs8(seq(smallInteger(1), octets(d), contextTag(1, true, bitString(point)), smallInteger(7)))],
    ['[1] before [0]', pkcs8(seq(smallInteger(1), octets(d), contextTag(1, true, bitString(point)), contextTag(0, true, oid('1.2.840.10045.3.1.7'))))],
    ['a trailing element in PKCS#8', pkcs8(seq(smallInteger(1), octets(d)), smallInteger(7))],
    ['a compressed stated point', pkcs8(seq(smallInteger(1), octets(d), contextTag(1, true, bitString(Buffer.concat([Buffer.from([0x02 + (point[64] & 1)]), point.subarray(1, 33)])))))],
  ] as const) {
    assert.equal(p256SpkiOfPrivateKeyPem(pem), undefined, what);
  }
});

/** The SEC1 key with its optional [1] publicKey dropped (the DER lengths are one byte here). */
function withoutPublicKey(sec1: Buffer): Buffer {
  const body = sec1.subarray(2);
  const i = body.indexOf(Buffer.from([0xa1]), 2 + 3 + 34);
  const inner = body.subarray(0, i);
  return Buffer.concat([Buffer.from([0x30, inner.length]), inner]);
}
