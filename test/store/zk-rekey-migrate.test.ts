import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { UserError } from '../../src/common/errors';
import { kekFromBytes, loadKek } from '../../src/store/kek';
import type { CanonicalPolicy } from '../../src/mesh/policy';
import { migrateStore } from '../../src/store/migrate';
import { FileStore } from '../../src/store/file-store';
import { newJoinToken } from '../../src/server/join-token';
import { rekeyKek, rekeyStore } from '../../src/store/rekey';
import { ZkStore } from '../../src/store/zk/zk-store';
import type { Store } from '../../src/store/store';
import { ZooKeeperServer, startZooKeeper } from '../helpers/zookeeper';
import { freshUrl, open, sampleSecret } from './zk-fixtures';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-rekey-'));

let zk: ZooKeeperServer;
before(async () => {
  zk = await startZooKeeper();
});
after(async () => {
  await zk?.destroy();
});

function kekFile(name: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, randomBytes(32));
  return f;
}

/** Every secret and the CA secret exactly as stored: data as read with `store`'s KEK, plus versions. */
async function snapshot(store: ZkStore): Promise<string> {
  return JSON.stringify({ ca: await store.getCaSecret(), secrets: await store.listSecrets() });
}

async function seed(store: Store, n: number): Promise<void> {
  await store.createCaSecretIfAbsent({ caCertPem: 'ca-cert', caKeyPem: '-----BEGIN PRIVATE KEY-----\nca\n-----END PRIVATE KEY-----\n' });
  for (let i = 0; i < n; i++) await store.putSecret(sampleSecret(`ns${i % 3}`, `sa${i}`), null);
}

test('rekey: every key re-sealed under the new KEK; the old KEK no longer opens them', async () => {
  const url = freshUrl(zk);
  const oldF = kekFile('old1');
  const newF = kekFile('new1');
  const oldKek = loadKek(oldF);
  const newKek = loadKek(newF);
  const s = await open(url, { kek: oldKek });
  await seed(s, 20);
  const before = await s.listSecrets();
  await s.close();

  const r = await open(url, { kek: rekeyKek(newKek, oldKek) });
  const result = await rekeyStore(r, newKek.keyId);
  await r.close();
  assert.deepEqual(result, { secrets: 20, caSecret: true, keyId: newKek.keyId });

  const withNew = await open(url, { kek: newKek });
  const withOld = await open(url, { kek: oldKek });
  try {
    assert.deepEqual((await withNew.listSecrets()).map((x) => x.keyPem), before.map((x) => x.keyPem));
    assert.ok((await withNew.getCaSecret())?.caKeyPem.includes('PRIVATE KEY'));
    await assert.rejects(withOld.listSecrets(), new RegExp(newKek.keyId));
    await assert.rejects(withOld.getCaSecret(), UserError);
  } finally {
    await Promise.all([withNew.close(), withOld.close()]);
  }
});

test('rekey with a wrong old KEK: one clear line, exit code 2, and nothing changes (CLI)', async () => {
  const url = freshUrl(zk);
  const realF = kekFile('real2');
  const wrongF = kekFile('wrong2');
  const newF = kekFile('new2');
  const s = await open(url, { kek: loadKek(realF) });
  try {
    await seed(s, 10);
    const before = await snapshot(s);
    const err = await run(process.execPath, [CLI, 'store', 'rekey', '--store', url, '--old-kek', wrongF, '--new-kek', newF]).then(
      () => assert.fail('rekey with the wrong key succeeded'),
      (e: { code: number; stderr: string; stdout: string }) => e,
    );
    assert.equal(err.code, 2);
    const lines = err.stderr.trim().split('\n');
    assert.equal(lines.length, 1, err.stderr);
    assert.match(lines[0], new RegExp(`sealed with KEK ${loadKek(realF).keyId}`));
    assert.match(lines[0], new RegExp(loadKek(wrongF).keyId));
    assert.equal(await snapshot(s), before, 'data and versions unchanged');

    // And the same command with the right key works, and can be run again.
    for (let i = 0; i < 2; i++) {
      const ok = await run(process.execPath, [CLI, 'store', 'rekey', '--store', url, '--old-kek', realF, '--new-kek', newF]);
      assert.match(ok.stdout, /10 secrets and the CA secret now sealed with KEK/);
    }
  } finally {
    await s.close();
  }
});

test('migrate zk -> zk copies everything; running it twice changes nothing', async () => {
  const kek = kekFromBytes(randomBytes(32));
  const fromUrl = freshUrl(zk);
  const toUrl = freshUrl(zk);
  const from = await open(fromUrl, { kek });
  const to = await open(toUrl, { kek });
  try {
    await seed(from, 150);
    const first = await migrateStore(from, to);
    assert.deepEqual(first, { copied: 150, unchanged: 0, ca: 'copied', tokens: 0, nodes: 0, evictions: 0, policies: 'absent', policyDocuments: 0 });
    const strip = (xs: { version: number }[]) => xs.map(({ version: _v, ...rest }) => rest);
    assert.deepEqual(strip(await to.listSecrets()), strip(await from.listSecrets()));
    assert.deepEqual(await to.getCaSecret(), await from.getCaSecret());

    const after1 = await snapshot(to);
    const lines: string[] = [];
    const second = await migrateStore(from, to, (l) => lines.push(l));
    assert.deepEqual(second, { copied: 0, unchanged: 150, ca: 'unchanged', tokens: 0, nodes: 0, evictions: 0, policies: 'absent', policyDocuments: 0 });
    assert.equal(await snapshot(to), after1, 'no znode version moved');
    assert.ok(lines.some((l) => l.includes('150/150')), lines.join('\n'));

    // A changed source secret is copied again, the rest stay untouched.
    await from.putSecret(sampleSecret('ns1', 'sa1'));
    assert.deepEqual(await migrateStore(from, to), { copied: 1, unchanged: 149, ca: 'unchanged', tokens: 0, nodes: 0, evictions: 0, policies: 'absent', policyDocuments: 0 });
  } finally {
    await Promise.all([from.close(), to.close()]);
  }
});

test('migrate file -> zk carries unused, unexpired join tokens, node records and evictions; twice changes nothing', async () => {
  const fileDir = mkdtempSync(path.join(os.tmpdir(), 'citadel-migrate-tokens-'));
  const from = await FileStore.open(fileDir);
  const to = await open(freshUrl(zk));
  try {
    await seed(from, 2);
    const live = newJoinToken('agent-1', 3600_000);
    const expired = newJoinToken('agent-2', -1000);
    await from.putJoinToken(live.record);
    await from.putJoinToken(expired.record);
    const node = { host: 'agent-1', serialNumber: 'ab12', issuedAt: '2024-01-01T00:00:00.000Z', notAfter: '2024-01-02T00:00:00.000Z', lastContact: '2024-01-01T10:00:00.000Z' };
    await from.putNodeRecord(node);
    const eviction = { host: 'agent-3', evictedAt: '2024-01-01T12:00:00.000Z', reason: 'disk stolen' };
    await from.putNodeEviction(eviction);

    const policy = [{ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } }] as CanonicalPolicy[];
    await from.putPolicies(policy, 0);

    const first = await migrateStore(from, to);
    assert.deepEqual(first, { copied: 2, unchanged: 0, ca: 'copied', tokens: 1, nodes: 1, evictions: 1, policies: 'copied', policyDocuments: 1 });
    assert.deepEqual((await to.getPolicies()).documents, policy);
    assert.deepEqual(await to.listJoinTokens(), [live.record]);
    assert.deepEqual(await to.listNodeRecords(), [node]);
    assert.deepEqual(await to.listNodeEvictions(), [eviction]);
    assert.deepEqual(await migrateStore(from, to), { copied: 0, unchanged: 2, ca: 'unchanged', tokens: 0, nodes: 0, evictions: 0, policies: 'unchanged', policyDocuments: 1 });
    const policyVersion = (await to.getPolicies()).version;
    // A different policy set on the target is refused before anything is written.
    await from.putPolicies([{ ...policy[0], spec: { mtls: { mode: 'PERMISSIVE' } } }] as CanonicalPolicy[], 1);
    await from.putSecret(sampleSecret('ns1', 'sa-new'));
    await assert.rejects(migrateStore(from, to), /already holds a different mesh policy set \(1 documents\)/);
    assert.equal((await to.getPolicies()).version, policyVersion);
    assert.equal((await to.listSecrets()).length, 2, 'nothing copied');
    // The copied token works once on the target, as it would have on the source.
    assert.deepEqual(await to.consumeJoinToken(live.record.hash), live.record);
    assert.equal(await to.consumeJoinToken(live.record.hash), undefined);
  } finally {
    await Promise.all([from.close(), to.close()]);
    rmSync(fileDir, { recursive: true, force: true });
  }
});

test('migrate refuses a target with a different CA root, before writing anything', async () => {
  const from = await open(freshUrl(zk));
  const to = await open(freshUrl(zk));
  try {
    await seed(from, 3);
    await to.createCaSecretIfAbsent({ caCertPem: 'other-root', caKeyPem: 'other-key' });
    await assert.rejects(migrateStore(from, to), /already holds a different CA root/);
    assert.deepEqual(await to.listSecrets(), []);
  } finally {
    await Promise.all([from.close(), to.close()]);
  }
});

test('citadel store migrate (CLI) prints progress and a summary; second run copies nothing', async () => {
  const kf = kekFile('mig');
  const fromUrl = freshUrl(zk);
  const toUrl = freshUrl(zk);
  const from = await open(fromUrl, { kek: loadKek(kf) });
  await seed(from, 5);
  await from.close();
  const args = [CLI, 'store', 'migrate', '--from', fromUrl, '--to', toUrl, '--kek-file', kf];
  const one = await run(process.execPath, args);
  assert.match(one.stdout, /5 secrets copied, 0 unchanged, CA secret copied, 0 join tokens/);
  const two = await run(process.execPath, args);
  assert.match(two.stdout, /0 secrets copied, 5 unchanged, CA secret unchanged/);
});
