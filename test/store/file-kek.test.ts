import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { FileStore } from '../../src/store/file-store';
import { loadKek } from '../../src/store/kek';
import { SECRET_TYPE } from '../../src/store/store';
import { cliPath, tempDir } from '../helpers/pki';

const citadel = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });

/** Every file under dir, with its contents. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(p, readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

test('file store: keys sealed at rest with --kek-file, rekeyed to a new key; a wrong old key changes nothing', () => {
  const dir = tempDir();
  const data = path.join(dir, 'data');
  const store = `file:${data}`;
  const a = path.join(dir, 'a.kek');
  const b = path.join(dir, 'b.kek');
  const c = path.join(dir, 'c.kek');
  assert.equal(citadel('store', 'kek-generate', c).status, 0);
  assert.equal(citadel('store', 'kek-generate', a).status, 0);
  assert.equal(citadel('store', 'kek-generate', b).status, 0);
  assert.equal(citadel('ca', 'init', '--store', store, '--kek-file', a).status, 0);
  const issued = citadel('cert', 'issue', '-n', 'prod', '-s', 'api', '-o', path.join(dir, 'out'), '--store', store, '--kek-file', a);
  assert.equal(issued.status, 0, issued.stderr);
  assert.match(readFileSync(path.join(data, 'ca', 'istio-ca-secret', 'ca-key.pem'), 'utf8'), /^citadel-kek:v1:/);

  // Without the key, the CA cannot be opened: a clear error, not a crash.
  const noKey = citadel('cert', 'issue', '-n', 'prod', '-s', 'api', '-o', path.join(dir, 'out2'), '--store', store);
  assert.equal(noKey.status, 2);
  assert.match(noKey.stderr, /encrypted|kek/i);

  const before = snapshot(data);
  // The keys are sealed with a; c is neither the old nor the new key.
  const wrong = citadel('store', 'rekey', '--store', store, '--old-kek', c, '--new-kek', b);
  assert.equal(wrong.status, 2, wrong.stderr);
  assert.equal(wrong.stderr.trim().split('\n').length, 1);
  assert.deepEqual(snapshot(data), before, 'a failed rekey changes nothing');

  const ok = citadel('store', 'rekey', '--store', store, '--old-kek', a, '--new-kek', b);
  assert.equal(ok.status, 0, ok.stderr);
  const again = citadel('cert', 'issue', '-n', 'prod', '-s', 'web', '-o', path.join(dir, 'out3'), '--store', store, '--kek-file', b);
  assert.equal(again.status, 0, again.stderr);
  const old = citadel('cert', 'issue', '-n', 'prod', '-s', 'web', '-o', path.join(dir, 'out4'), '--store', store, '--kek-file', a);
  assert.equal(old.status, 2);
});

test('file store: secret keys round-trip through the KEK', async () => {
  const dir = tempDir();
  const kekFile = path.join(dir, 'k');
  assert.equal(citadel('store', 'kek-generate', kekFile).status, 0);
  const kek = loadKek(kekFile);
  const store = await FileStore.open(path.join(dir, 'data'), { kek });
  const keyPem = '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n';
  await store.putSecret({ namespace: 'n', name: 'istio.s', certChainPem: 'c', keyPem, rootCertPem: 'r', metadata: { type: SECRET_TYPE, serviceAccount: 's', spiffeId: 'spiffe://cluster.local/ns/n/sa/s', notBefore: '', notAfter: '', serialNumber: '01', updatedAt: '' } });
  const onDisk = readFileSync(path.join(dir, 'data', 'secrets', 'n', 'istio.s'), 'utf8');
  assert.ok(!onDisk.includes('PRIVATE KEY'), 'the key is sealed on disk');
  assert.match(JSON.parse(onDisk).keyPem, /^citadel-kek:v1:/);
  assert.equal((await store.getSecret('n', 'istio.s'))?.keyPem, keyPem);
  const plain = await FileStore.open(path.join(dir, 'data'));
  await assert.rejects(plain.getSecret('n', 'istio.s'), /--kek-file/);
});
