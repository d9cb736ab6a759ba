import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { nativeP256 } from '../../src/common/native';
import { spkiDer, verifyWithSpki } from '../../src/pki/keys';

// The build falls back to node:crypto without a compiler; CI has one and sets CITADEL_REQUIRE_NATIVE=1.
const required = process.env.CITADEL_REQUIRE_NATIVE === '1';

test('the native P-256 verifier is built (npm run build compiles it)', { skip: !nativeP256 && !required ? 'the native addon is not built (no compiler?): run npm run build:native' : false }, () => {
  assert.ok(nativeP256, 'build/Release/citadel_native.node did not load; run npm run build:native');
});

test('native and node:crypto agree on good, tampered and foreign signatures', { skip: !nativeP256 }, () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = spkiDer(publicKey);
  const point = spki.subarray(26);
  for (let i = 0; i < 50; i++) {
    const msg = Buffer.from(`message ${i}`);
    const sig = sign('sha256', msg, privateKey);
    assert.equal(nativeP256!.verifyP256Sha256(point, msg, sig), true);
    assert.equal(verifyWithSpki(spki, 'sha256', msg, sig), true);
    assert.equal(nativeP256!.verifyP256Sha256(point, Buffer.from(`message ${i}!`), sig), false);
    assert.equal(nativeP256!.verifyP256Sha256(spkiDer(other.publicKey).subarray(26), msg, sig), false);
    const bad = Buffer.from(sig);
    bad[bad.length - 3] ^= 0x40;
    assert.equal(nativeP256!.verifyP256Sha256(point, msg, bad), false);
  }
  // A point that is not on the curve is refused, not trusted.
  const offCurve = Buffer.from(point);
  offCurve[64] ^= 0x01;
  assert.equal(nativeP256!.verifyP256Sha256(offCurve, Buffer.from('m'), sign('sha256', Buffer.from('m'), privateKey)), false);
  assert.equal(nativeP256!.verifyP256Sha256(point.subarray(0, 64), Buffer.from('m'), Buffer.alloc(70)), false);
  assert.throws(() => (nativeP256 as any).verifyP256Sha256('x'), /takes three Buffers/);
});

test('native P-256 signatures verify with node:crypto and openssl reads the certificates', { skip: !nativeP256 }, async () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signer = nativeP256!.p256Signer(privateKey.export({ format: 'der', type: 'sec1' }));
  const { verify } = await import('node:crypto');
  for (let i = 0; i < 50; i++) {
    const msg = Buffer.from(`tbs ${i}`);
    const sig = nativeP256!.signP256Sha256(signer, msg);
    assert.equal(verify('sha256', msg, publicKey, sig), true);
    assert.equal(verify('sha256', Buffer.from(`tbs ${i}.`), publicKey, sig), false);
  }
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  assert.throws(() => nativeP256!.p256Signer(rsa.privateKey.export({ format: 'der', type: 'pkcs1' })), /not a valid P-256 private key/);
});
