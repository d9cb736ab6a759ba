import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { lstatSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConflictError } from '../../src/common/errors';
import { FileStore } from '../../src/store/file-store';
import { Secret, SECRET_TYPE } from '../../src/store/store';
import { verifyBundle } from '../../src/cli/commands/cert';
import { bundleFor, tempDir, testCa } from '../helpers/pki';

const ca = testCa();

function secretFor(ns: string, sa: string): Secret {
  const b = bundleFor(ca, ns, sa);
  return {
    namespace: ns,
    name: `istio.${sa}`,
    certChainPem: b.certChainPem,
    keyPem: b.keyPem,
    rootCertPem: b.rootCertPem,
    metadata: { type: SECRET_TYPE, serviceAccount: sa, spiffeId: `spiffe://cluster.local/ns/${ns}/sa/${sa}`, notBefore: b.notBefore.toISOString(), notAfter: b.notAfter.toISOString(), serialNumber: b.serialHex, updatedAt: new Date().toISOString() },
  };
}

test('secrets are laid out as Citadel\'s and read back whole; key files are 0600', async () => {
  const dir = tempDir();
  const store = await FileStore.open(dir);
  const s = secretFor('prod', 'api');
  assert.equal(await store.putSecret(s, null), 1);
  const secretDir = path.join(dir, 'secrets', 'prod', 'istio.api');
  assert.ok(lstatSync(secretDir).isSymbolicLink());
  assert.deepEqual(readdirSync(secretDir).sort(), ['cert-chain.pem', 'key.pem', 'metadata.json', 'root-cert.pem']);
  assert.equal(statSync(path.join(secretDir, 'key.pem')).mode & 0o777, 0o600);
  const back = await store.getSecret('prod', 'istio.api');
  assert.equal(back?.keyPem, s.keyPem);
  assert.equal(back?.certChainPem, s.certChainPem);
  assert.equal(back?.version, 1);
  assert.deepEqual((await store.listSecrets()).map((x) => `${x.namespace}/${x.name}`), ['prod/istio.api']);
});

test('compare-and-set: a stale version or a second create is refused and changes nothing', async () => {
  const store = await FileStore.open(tempDir());
  const first = secretFor('prod', 'api');
  await store.putSecret(first, null);
  await assert.rejects(store.putSecret(secretFor('prod', 'api'), null), ConflictError);
  assert.equal(await store.putSecret(secretFor('prod', 'api'), 1), 2);
  await assert.rejects(store.putSecret(secretFor('prod', 'api'), 1), /is at version 2, not 1/);
  await assert.rejects(store.deleteSecret('prod', 'istio.api', 1), ConflictError);
  assert.equal((await store.getSecret('prod', 'istio.api'))?.version, 2);
  assert.equal(await store.deleteSecret('prod', 'istio.api', 2), true);
  assert.equal(await store.getSecret('prod', 'istio.api'), undefined);
  assert.equal(await store.deleteSecret('prod', 'istio.api'), false);
});

test('the CA secret is created once: concurrent creators all get the same root', async () => {
  const dir = tempDir();
  const stores = await Promise.all([1, 2, 3, 4].map(() => FileStore.open(dir)));
  const candidates = stores.map(() => ({ caCertPem: testCa().rootCertPem, caKeyPem: 'k' + Math.random() }));
  const winners = await Promise.all(stores.map((s, i) => s.createCaSecretIfAbsent(candidates[i])));
  assert.equal(new Set(winners.map((w) => w.caCertPem)).size, 1);
  assert.ok(candidates.some((c) => c.caCertPem === winners[0].caCertPem));
});

test('a join token is consumed exactly once', async () => {
  const store = await FileStore.open(tempDir());
  await store.putJoinToken({ hash: 'ab'.repeat(32), host: 'agent-1', expiresAt: new Date(Date.now() + 60_000).toISOString(), createdAt: new Date().toISOString() });
  const results = await Promise.all([1, 2, 3].map(() => store.consumeJoinToken('ab'.repeat(32))));
  assert.equal(results.filter(Boolean).length, 1);
  assert.equal(results.find(Boolean)?.host, 'agent-1');
});

test('a writer killed mid-write never leaves a torn secret', async () => {
  const dir = tempDir();
  // Each round: a child process rewrites secrets in a loop and is SIGKILLed at a random moment.
  const writer = path.join(dir, 'writer.js');
  writeFileSync(
    writer,
    `const { FileStore } = require(${JSON.stringify(path.resolve(__dirname, '../../src/store/file-store.js'))});
     const { testCa, bundleFor } = require(${JSON.stringify(path.resolve(__dirname, '../helpers/pki.js'))});
     const ca = testCa();
     (async () => {
       const store = await FileStore.open(${JSON.stringify(path.join(dir, 'data'))});
       for (let i = 0; ; i++) {
         const sa = 'sa' + (i % 3);
         const b = bundleFor(ca, 'prod', sa);
         await store.putSecret({ namespace: 'prod', name: 'istio.' + sa, certChainPem: b.certChainPem, keyPem: b.keyPem, rootCertPem: b.rootCertPem,
           metadata: { type: 'istio.io/key-and-cert', serviceAccount: sa, spiffeId: '', notBefore: '', notAfter: '', serialNumber: b.serialHex, updatedAt: '' } });
         if (i === 0) process.stdout.write('ready\\n'); // one secret is in place; the kill lands mid-write of a later one
       }
     })();`,
  );
  let checked = 0;
  for (let round = 0; round < 8; round++) {
    const child = spawn(process.execPath, [writer], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => child.stdout.once('data', () => r()));
    await new Promise((r) => setTimeout(r, 30 + Math.random() * 120));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const store = await FileStore.open(path.join(dir, 'data'));
    for (const s of await store.listSecrets()) {
      assert.deepEqual(verifyBundle(s.certChainPem, s.keyPem, s.rootCertPem), [], `${s.name} after kill ${round}`);
      checked++;
    }
    // Garbage from the killed writer is cleared on open: only live versions remain.
    const entries = readdirSync(path.join(dir, 'data', 'secrets', 'prod'));
    assert.ok(entries.every((e) => !e.includes('.tmp-') && !e.includes('.link-')), entries.join(','));
  }
  assert.ok(checked >= 8, `checked ${checked} secrets`);
});

test('the native syncfs resolves for a real directory and rejects a bad descriptor', async (t) => {
  const { nativeAddon } = await import('../../src/common/native');
  if (!nativeAddon) return t.skip('native addon not built');
  const { openSync, closeSync } = await import('node:fs');
  const fd = openSync(tempDir(), 'r');
  try {
    assert.equal(await nativeAddon.syncfs(fd), undefined);
  } finally {
    closeSync(fd);
  }
  await assert.rejects(nativeAddon.syncfs(987654), /Bad file descriptor/);
});
