import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConflictError } from '../../src/common/errors';
import { FileStore } from '../../src/store/file-store';
import { decodeSecretRecord } from '../../src/store/secret-record';
import { SecretWrite, SecretWriter } from '../../src/store/secret-writer';
import { Secret, SECRET_TYPE } from '../../src/store/store';
import { bundleFor, tempDir, testCa } from '../helpers/pki';

const ca = testCa();

function write(ns: string, sa: string, expectedVersion?: number | null): SecretWrite {
  const b = bundleFor(ca, ns, sa);
  const secret: Secret = {
    namespace: ns, name: `istio.${sa}`, certChainPem: b.certChainPem, keyPem: b.keyPem, rootCertPem: b.rootCertPem,
    metadata: { type: SECRET_TYPE, serviceAccount: sa, spiffeId: '', notBefore: '', notAfter: '', serialNumber: b.serialHex, updatedAt: '' },
  };
  return { secret, expectedVersion };
}

/** The secret document on disk, parsed. */
const onDisk = (file: string) => decodeSecretRecord(file, readFileSync(file, 'utf8'));

for (const threads of [2, 0]) {
  const mode = threads ? `${threads} writer threads` : 'in-thread (the fallback)';

  test(`secret writer, ${mode}: writes land whole, versions count up, a lost compare-and-set changes nothing`, async () => {
    const dir = tempDir();
    const writer = new SecretWriter(dir, threads);
    try {
      const first = write('prod', 'api', null);
      assert.equal(await writer.write(first), 1);
      const second = write('prod', 'api', 1);
      assert.equal(await writer.write(second), 2);
      await assert.rejects(writer.write(write('prod', 'api', null)), ConflictError);
      await assert.rejects(writer.write(write('prod', 'api', 1)), /is at version 2, not 1/);
      const live = onDisk(path.join(dir, 'secrets', 'prod', 'istio.api'));
      assert.equal(live.certChainPem, second.secret.certChainPem, 'the refused writes left the second version in place');
      assert.equal(live.keyPem, second.secret.keyPem);
      assert.equal(live.version, 2);
      assert.equal(statSync(path.join(dir, 'secrets', 'prod', 'istio.api')).mode & 0o777, 0o600, 'a secret holds a private key: 0600');
      assert.deepEqual(readdirSync(path.join(dir, 'secrets', 'prod')), ['istio.api'], 'no temporaries left');
    } finally {
      await writer.close();
    }
  });

  test(`secret writer, ${mode}: an I/O error is reported with its code and leaves nothing behind`, async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'secrets'), { recursive: true });
    writeFileSync(path.join(dir, 'secrets', 'blocked'), 'a file where a namespace directory would go');
    const writer = new SecretWriter(dir, threads);
    try {
      const results = await Promise.allSettled([writer.write(write('blocked', 'api')), writer.write(write('fine', 'api'))]);
      assert.equal(results[0].status, 'rejected');
      assert.equal(((results[0] as PromiseRejectedResult).reason as NodeJS.ErrnoException).code, 'ENOTDIR');
      assert.deepEqual(results[1], { status: 'fulfilled', value: 1 }, 'a failure in a batch does not fail the others');
      assert.deepEqual(readdirSync(path.join(dir, 'secrets')).sort(), ['blocked', 'fine']);
    } finally {
      await writer.close();
    }
  });
}

test('file store: 400 concurrent writes over 40 namespaces through the writer threads; racing creates of one secret, exactly one wins', async () => {
  const dir = tempDir();
  const store = await FileStore.open(dir);
  try {
    const bundles = Array.from({ length: 400 }, (_, i) => ({ ns: `ns-${i % 40}`, sa: `sa-${Math.floor(i / 40)}` }));
    const secret = (ns: string, sa: string): Secret => {
      const b = bundleFor(ca, ns, sa);
      return {
        namespace: ns, name: `istio.${sa}`, certChainPem: b.certChainPem, keyPem: b.keyPem, rootCertPem: b.rootCertPem,
        metadata: { type: SECRET_TYPE, serviceAccount: sa, spiffeId: '', notBefore: '', notAfter: '', serialNumber: b.serialHex, updatedAt: '' },
      };
    };
    const written = bundles.map(({ ns, sa }) => secret(ns, sa));
    const versions = await Promise.all(written.map((s) => store.putSecret(s, null)));
    assert.ok(versions.every((v) => v === 1));
    const racers = await Promise.allSettled([store.putSecret(secret('ns-0', 'sa-0'), 1), store.putSecret(secret('ns-0', 'sa-0'), 1)]);
    assert.equal(racers.filter((r) => r.status === 'fulfilled').length, 1, 'one of two writers with the same expected version wins');
    assert.ok((racers.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason instanceof ConflictError);
    const listed = await store.listSecrets();
    assert.equal(listed.length, 400);
    for (const s of written.slice(1)) {
      const back = listed.find((x) => x.namespace === s.namespace && x.name === s.name)!;
      assert.equal(back.certChainPem, s.certChainPem);
      assert.equal(back.keyPem, s.keyPem);
    }
    for (let n = 0; n < 40; n++) {
      const entries = readdirSync(path.join(dir, 'secrets', `ns-${n}`));
      assert.ok(entries.every((e) => !e.startsWith('.')), entries.join(','));
    }
  } finally {
    await store.close();
  }
});

test('secret writer: a writer thread that dies is replaced, and writes go on', async () => {
  const dir = tempDir();
  const writer = new SecretWriter(dir, 2);
  try {
    assert.equal(await writer.write(write('a', 'api')), 1);
    assert.equal(await writer.write(write('b', 'api')), 1);
    const threads = (writer as unknown as { workers: Array<{ terminate(): Promise<number> }> }).workers;
    await Promise.all(threads.map((t) => t.terminate())); // both threads die after having answered
    await new Promise((r) => setImmediate(r));
    const versions = await Promise.all(['a', 'b', 'c', 'd'].map((ns) => writer.write(write(ns, 'api'))));
    assert.deepEqual(versions, [2, 2, 1, 1]);
    assert.equal(onDisk(path.join(dir, 'secrets', 'c', 'istio.api')).keyPem.includes('PRIVATE KEY'), true);
  } finally {
    await writer.close();
  }
});
