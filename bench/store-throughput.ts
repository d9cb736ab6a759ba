/**
 * Secret write and read throughput: the ZooKeeper store (a real local server, fsync on as in
 * production) beside the file store (fsynced files). Both seal keys with a KEK.
 *
 *   node dist/bench/store-throughput.js [secrets=2000] [concurrency=32]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../src/store';
import { kekFromBytes } from '../src/store/kek';
import { SECRET_TYPE, Secret, Store } from '../src/store/store';
import { startZooKeeper } from '../test/helpers/zookeeper';

export interface StoreThroughput {
  store: string;
  writesPerSec: number;
  readsPerSec: number;
  listMs: number;
}

function secret(i: number): Secret {
  const sa = `sa${i}`;
  const namespace = `ns${i % 50}`;
  return {
    namespace,
    name: `istio.${sa}`,
    certChainPem: `-----BEGIN CERTIFICATE-----\n${randomBytes(600).toString('base64')}\n-----END CERTIFICATE-----\n`,
    keyPem: `-----BEGIN PRIVATE KEY-----\n${randomBytes(180).toString('base64')}\n-----END PRIVATE KEY-----\n`,
    rootCertPem: `-----BEGIN CERTIFICATE-----\n${randomBytes(500).toString('base64')}\n-----END CERTIFICATE-----\n`,
    metadata: {
      type: SECRET_TYPE,
      serviceAccount: sa,
      spiffeId: `spiffe://cluster.local/ns/${namespace}/sa/${sa}`,
      notBefore: new Date().toISOString(),
      notAfter: new Date(Date.now() + 86_400_000).toISOString(),
      serialNumber: randomBytes(8).toString('hex'),
      updatedAt: new Date().toISOString(),
    },
  };
}

async function inParallel(n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
  return performance.now() - t0;
}

export async function measure(store: Store, n: number, concurrency: number): Promise<StoreThroughput> {
  const secrets = Array.from({ length: n }, (_, i) => secret(i));
  const writeMs = await inParallel(n, concurrency, (i) => store.putSecret(secrets[i]));
  const readMs = await inParallel(n, concurrency, async (i) => {
    if (!(await store.getSecret(secrets[i].namespace, secrets[i].name))) throw new Error('lost a secret');
  });
  const t0 = performance.now();
  const listed = await store.listSecrets();
  const listMs = performance.now() - t0;
  if (listed.length !== n) throw new Error(`listed ${listed.length} of ${n}`);
  return { store: store.url.split(':')[0], writesPerSec: (n * 1000) / writeMs, readsPerSec: (n * 1000) / readMs, listMs };
}

export async function main(argv = process.argv.slice(2)): Promise<StoreThroughput[]> {
  const n = Number(argv[0] ?? 2000);
  const concurrency = Number(argv[1] ?? 32);
  const kek = kekFromBytes(randomBytes(32));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-store-'));
  const zk = await startZooKeeper({ forceSync: true, tickTime: 2000 });
  const results: StoreThroughput[] = [];
  try {
    const file = await openStore(`file:${dir}`, { kek });
    try {
      results.push(await measure(file, n, concurrency));
    } finally {
      await file.close();
    }
    const zkStore = await openStore(zk.url('/bench'), { kek });
    try {
      results.push(await measure(zkStore, n, concurrency));
    } finally {
      await zkStore.close();
    }
  } finally {
    await zk.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  const [f, z] = results;
  console.log(`store throughput: ${n} secrets, ${concurrency} in flight, KEK sealing on, fsync on`);
  for (const r of results) {
    console.log(`  ${r.store.padEnd(5)} write ${r.writesPerSec.toFixed(0).padStart(7)} ops/s   read ${r.readsPerSec.toFixed(0).padStart(7)} ops/s   list all ${r.listMs.toFixed(0)} ms`);
  }
  console.log(`  zk vs file (>1: zk faster): write ${(z.writesPerSec / f.writesPerSec).toFixed(2)}x   read ${(z.readsPerSec / f.readsPerSec).toFixed(2)}x   list ${(f.listMs / z.listMs).toFixed(2)}x`);
  return results;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
