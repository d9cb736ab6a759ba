import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { generateKekFile, kekFromBytes, kekKeyId, kekRing, loadKek, sealedKeyId } from '../../src/store/kek';
import { isSealed } from '../../src/store/store';
import { UserError } from '../../src/common/errors';

const PEM = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n';
const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-kek-'));

test('seal then open gives the PEM back; the sealed form names the key and is not a PEM', () => {
  const key = randomBytes(32);
  const kek = kekFromBytes(key);
  const sealed = kek.seal(PEM);
  assert.ok(isSealed(sealed));
  assert.ok(!sealed.includes('PRIVATE KEY'));
  assert.match(sealed, /^citadel-kek:v1:[0-9a-f]{8}:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
  assert.equal(sealedKeyId(sealed), kekKeyId(key));
  assert.equal(kek.keyId, kekKeyId(key));
  assert.equal(kek.open(sealed), PEM);
  assert.notEqual(kek.seal(PEM), sealed, 'every seal uses a fresh IV');
});

test('opening with another key names both key ids', () => {
  const a = kekFromBytes(randomBytes(32));
  const b = kekFromBytes(randomBytes(32));
  assert.throws(
    () => b.open(a.seal(PEM)),
    (err: Error) => err instanceof UserError && err.message.includes(a.keyId) && err.message.includes(b.keyId) && !err.message.includes('\n'),
  );
});

test('a tampered ciphertext, IV or relabelled header is detected', () => {
  const kek = kekFromBytes(randomBytes(32));
  const sealed = kek.seal(PEM);
  const [p, v, id, iv, body] = sealed.split(':');
  const bodyBytes = Buffer.from(body, 'base64');
  bodyBytes[3] ^= 1;
  assert.throws(() => kek.open([p, v, id, iv, bodyBytes.toString('base64')].join(':')), /failed authentication/);
  const ivBytes = Buffer.from(iv, 'base64');
  ivBytes[0] ^= 1;
  assert.throws(() => kek.open([p, v, id, ivBytes.toString('base64'), body].join(':')), /failed authentication/);
  assert.throws(() => kek.open([p, 'v2', id, iv, body].join(':')), /format v2/);
  assert.throws(() => kek.open('-----BEGIN PRIVATE KEY-----'), /not a citadel-kek sealed value/);
});

test('loadKek accepts 32 raw bytes, 64 hex digits and base64, and refuses anything else clearly', () => {
  const key = randomBytes(32);
  const raw = path.join(dir, 'raw');
  const hex = path.join(dir, 'hex');
  const b64 = path.join(dir, 'b64');
  writeFileSync(raw, key);
  writeFileSync(hex, key.toString('hex') + '\n');
  writeFileSync(b64, key.toString('base64') + '\n');
  for (const f of [raw, hex, b64]) assert.equal(loadKek(f).keyId, kekKeyId(key), f);
  const sealed = loadKek(raw).seal(PEM);
  assert.equal(loadKek(b64).open(sealed), PEM);

  const short = path.join(dir, 'short');
  writeFileSync(short, randomBytes(16));
  assert.throws(() => loadKek(short), (err: Error) => err instanceof UserError && /exactly 32 random bytes.*found 16 bytes/.test(err.message));
  assert.throws(() => loadKek(path.join(dir, 'missing')), /cannot read it/);
});

test('generateKekFile writes 32 bytes with mode 0600 and never overwrites', () => {
  const f = path.join(dir, 'generated');
  const kek = generateKekFile(f);
  assert.equal(readFileSync(f).length, 32);
  assert.equal(statSync(f).mode & 0o777, 0o600);
  assert.equal(loadKek(f).keyId, kek.keyId);
  assert.throws(() => generateKekFile(f), /already exists/);
});

test('a KEK ring seals with the first key and opens values of any of its keys', () => {
  const oldKek = kekFromBytes(randomBytes(32));
  const newKek = kekFromBytes(randomBytes(32));
  const ring = kekRing(newKek, oldKek);
  assert.equal(sealedKeyId(ring.seal(PEM)), newKek.keyId);
  assert.equal(ring.open(oldKek.seal(PEM)), PEM);
  assert.equal(ring.open(newKek.seal(PEM)), PEM);
  const stranger = kekFromBytes(randomBytes(32));
  assert.throws(() => ring.open(stranger.seal(PEM)), new RegExp(stranger.keyId));
});
