import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { uniqueSuffix } from '../../src/common/atomic-file';
import { ConflictError } from '../../src/common/errors';
import { FileStore } from '../../src/store/file-store';
import { Secret, SECRET_TYPE } from '../../src/store/store';
import { checkBundle } from '../../src/pki/bundle';
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

test('a secret is one file, 0600, holding Citadel\'s three PEMs and its version, and reads back whole', async () => {
  const dir = tempDir();
  const store = await FileStore.open(dir);
  const s = secretFor('prod', 'api');
  assert.equal(await store.putSecret(s, null), 1);
  const file = path.join(dir, 'secrets', 'prod', 'istio.api');
  assert.ok(lstatSync(file).isFile());
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  assert.deepEqual([doc.v, doc.version, doc.namespace, doc.name, doc.certChainPem, doc.keyPem, doc.rootCertPem], [1, 1, 'prod', 'istio.api', s.certChainPem, s.keyPem, s.rootCertPem]);
  assert.deepEqual(readdirSync(path.join(dir, 'secrets', 'prod')), ['istio.api']);
  const back = await store.getSecret('prod', 'istio.api');
  assert.equal(back?.keyPem, s.keyPem);
  assert.equal(back?.certChainPem, s.certChainPem);
  assert.equal(back?.version, 1);
  assert.deepEqual((await store.listSecrets()).map((x) => `${x.namespace}/${x.name}`), ['prod/istio.api']);
});

test('a store in the earlier layout (a symlink to a directory of four files) is converted on open, versions kept', async () => {
  const dir = tempDir();
  const s = secretFor('prod', 'api');
  const nsDir = path.join(dir, 'secrets', 'prod');
  const v3 = path.join(nsDir, '.istio.api.v3');
  mkdirSync(v3, { recursive: true });
  writeFileSync(path.join(v3, 'cert-chain.pem'), s.certChainPem);
  writeFileSync(path.join(v3, 'key.pem'), s.keyPem, { mode: 0o600 });
  writeFileSync(path.join(v3, 'root-cert.pem'), s.rootCertPem);
  writeFileSync(path.join(v3, 'metadata.json'), JSON.stringify(s.metadata, null, 2));
  symlinkSync('.istio.api.v3', path.join(nsDir, 'istio.api'));
  mkdirSync(path.join(nsDir, '.istio.api.v4')); // a killed writer's version that no link names
  symlinkSync('.istio.api.v4', path.join(nsDir, '.istio.api.link-dead1')); // and its temporary link

  const store = await FileStore.open(dir);
  assert.deepEqual(readdirSync(nsDir), ['istio.api'], 'the version directories and leftovers are gone');
  assert.ok(lstatSync(path.join(nsDir, 'istio.api')).isFile());
  const back = await store.getSecret('prod', 'istio.api');
  assert.deepEqual([back?.version, back?.certChainPem, back?.keyPem, back?.rootCertPem, back?.metadata.spiffeId], [3, s.certChainPem, s.keyPem, s.rootCertPem, s.metadata.spiffeId]);
  assert.equal(await store.putSecret(secretFor('prod', 'api'), 3), 4, 'the compare-and-set goes on from the converted version');
});

test('a secret file that is not citadel\'s (broken or moved by hand) is a clear error, and a write over it changes nothing', async () => {
  const dir = tempDir();
  const store = await FileStore.open(dir);
  await store.putSecret(secretFor('prod', 'api'), null);
  const broken = path.join(dir, 'secrets', 'prod', 'istio.api');
  writeFileSync(broken, '{"v":1,"version":1,"namespace":"prod"'); // half a document
  await assert.rejects(store.getSecret('prod', 'istio.api'), new RegExp(`file ${broken} does not hold JSON written by citadel`));
  await assert.rejects(store.putSecret(secretFor('prod', 'api'), 1), /does not hold JSON written by citadel/);
  assert.equal(readFileSync(broken, 'utf8'), '{"v":1,"version":1,"namespace":"prod"', 'the refused write changed nothing');
  await store.putSecret(secretFor('qa', 'api'), null);
  mkdirSync(path.join(dir, 'secrets', 'staging'));
  copyFileSync(path.join(dir, 'secrets', 'qa', 'istio.api'), path.join(dir, 'secrets', 'staging', 'istio.api'));
  await assert.rejects(store.getSecret('staging', 'istio.api'), /holds the secret qa\/istio.api; it was copied or moved by hand/);
});

test('opening a store removes a dead writer\'s temporary files but not those of a live one', async () => {
  const dir = tempDir();
  const nsDir = path.join(dir, 'secrets', 'prod');
  mkdirSync(nsDir, { recursive: true });
  const live = `.istio.api.tmp-${uniqueSuffix()}`; // this process: a write in progress
  const dead = `.istio.web.tmp-${2 ** 22 + 7}.0123abcd1`; // above pid_max's default: no such process
  writeFileSync(path.join(nsDir, live), 'partial');
  writeFileSync(path.join(nsDir, dead), 'partial');
  const store = await FileStore.open(dir);
  assert.deepEqual(readdirSync(nsDir), [live]);
  assert.deepEqual(await store.listSecrets(), [], 'temporary files are never read as secrets');
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
      assert.deepEqual(checkBundle(s).problems, [], `${s.name} after kill ${round}`);
      checked++;
    }
    // Garbage from the killed writer is cleared on open: only live versions remain.
    const entries = readdirSync(path.join(dir, 'data', 'secrets', 'prod'));
    assert.ok(entries.every((e) => !e.startsWith('.')), entries.join(','));
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
