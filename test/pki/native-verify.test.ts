import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { nativeVerifier } from '../../src/pki/native';
import { spkiDer, verifyWithSpki } from '../../src/pki/keys';

test('the native P-256 verifier is built (npm run build compiles it)', () => {
  assert.ok(nativeVerifier, 'build/Release/citadel_native.node did not load; run npm run build:native');
});

test('native and node:crypto agree on good, tampered and foreign signatures', { skip: !nativeVerifier }, () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = spkiDer(publicKey);
  const point = spki.subarray(26);
  for (let i = 0; i < 50; i++) {
    const msg = Buffer.from(`message ${i}`);
    const sig = sign('sha256', msg, privateKey);
    assert.equal(nativeVerifier!.verifyP256Sha256(point, msg, sig), true);
    assert.equal(verifyWithSpki(spki, 'sha256', msg, sig), true);
    assert.equal(nativeVerifier!.verifyP256Sha256(point, Buffer.from(`message ${i}!`), sig), false);
    assert.equal(nativeVerifier!.verifyP256Sha256(spkiDer(other.publicKey).subarray(26), msg, sig), false);
    const bad = Buffer.from(sig);
    bad[bad.length - 3] ^= 0x40;
    assert.equal(nativeVerifier!.verifyP256Sha256(point, msg, bad), false);
  }
  // A point that is not on the curve is refused, not trusted.
  const offCurve = Buffer.from(point);
  offCurve[64] ^= 0x01;
  assert.equal(nativeVerifier!.verifyP256Sha256(offCurve, Buffer.from('m'), sign('sha256', Buffer.from('m'), privateKey)), false);
  assert.equal(nativeVerifier!.verifyP256Sha256(point.subarray(0, 64), Buffer.from('m'), Buffer.alloc(70)), false);
  assert.throws(() => (nativeVerifier as any).verifyP256Sha256('x'), /takes three Buffers/);
});
