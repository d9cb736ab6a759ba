/**
 * ZooKeeper down for 30 s (longer than the replicas' session timeout) under load: every replica
 * keeps signing from memory, the controller writes nothing while it is down and does not crash,
 * and after the restart one leader writes the secrets of the apps deployed meanwhile.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sleep } from '../../src/common/backoff';
import type { CaClient } from '../../src/agent/ca-client';
import { waitFor } from '../helpers/wait';
import { AppSpec, appsIn, createCertificateFor, createdByLog, expectedSecrets, HaCluster, isCreatedSecret, leadsPerLog, secretProblems } from './cluster';

const OUTAGE_MS = 30_000;
let cluster: HaCluster;

before(async () => {
  cluster = await HaCluster.start({ replicas: 2, sessionTimeout: '4s', resyncInterval: '2s' });
});
after(async () => {
  await cluster?.close();
});

interface Call {
  at: number;
  replica: string;
  error?: string;
}

test('ZooKeeper stopped for 30 s under load: signing goes on, writes pause, secrets catch up after the restart', async () => {
  const initial = appsIn('steady', 3);
  for (const app of initial) await cluster.deploy(app);
  const store = await cluster.store();
  const root = await cluster.rootCertPem();
  await waitFor('the initial secrets', async () => (await store.listSecrets()).length === expectedSecrets(initial).length, 30_000);
  await waitFor('one leader', () => cluster.replicas.filter(leadsPerLog).length === 1, 10_000);

  // Load: CreateCertificate on every replica in a loop, from before the outage to after it.
  const clients = new Map<string, CaClient>();
  for (const r of cluster.replicas) clients.set(r.name, await cluster.workloadClient(r, 'steady-0', 'sa-0'));
  const calls: Call[] = [];
  let loading = true;
  const load = (async () => {
    while (loading) {
      for (const r of cluster.replicas) {
        const call: Call = { at: Date.now(), replica: r.name };
        try {
          await createCertificateFor(clients.get(r.name)!, 'steady-0', 'sa-0', root, 5000);
        } catch (err) {
          call.error = (err as Error).message;
        }
        calls.push(call);
      }
      await sleep(100);
    }
  })();

  const outageApps: AppSpec[] = appsIn('outage', 5);
  let stoppedAt = 0;
  let startedAt = 0;
  try {
    await sleep(1000);
    const logMarks = new Map(cluster.replicas.map((r) => [r.name, r.logs().length]));
    await cluster.zk.stop();
    stoppedAt = Date.now();
    // Apps deployed while ZooKeeper is down: Marathon tells every replica, none can write.
    for (const app of outageApps) {
      await sleep(OUTAGE_MS / (outageApps.length + 1));
      await cluster.deploy(app);
    }
    await sleep(Math.max(0, stoppedAt + OUTAGE_MS - Date.now()));
    for (const r of cluster.replicas) {
      assert.equal(r.child.exitCode, null, `${r.name} is still running after ${OUTAGE_MS} ms without ZooKeeper`);
      // What Marathon sees: alive (not restarted, deploy/marathon's health check), not ready (its readiness check).
      assert.equal((await fetch(`http://127.0.0.1:${r.monitoringPort}/livez`)).status, 200, `${r.name} /livez during the outage`);
      const ready = await fetch(`http://127.0.0.1:${r.monitoringPort}/healthz`);
      assert.equal(ready.status, 503, `${r.name} /healthz during the outage`);
      assert.match(await ready.text(), /store/);
      const during = r.logs().slice(logMarks.get(r.name));
      assert.deepEqual(during.filter(isCreatedSecret), [], `${r.name} wrote no secret while ZooKeeper was down`);
      assert.equal(leadsPerLog(r), false, `${r.name} does not claim to lead while disconnected`);
    }
    const paused = cluster.replicas.flatMap((r) => r.logs().slice(logMarks.get(r.name))).filter((l) => l.msg === 'reconcile failed' || l.msg === 'cannot write secret; will retry');
    assert.ok(paused.length > 0, 'the controller logs that it cannot reach the store');
    const marks = new Map(cluster.replicas.map((r) => [r.name, createdByLog(r).length]));

    await cluster.zk.start();
    startedAt = Date.now();
    const want = expectedSecrets([...initial, ...outageApps]);
    await waitFor('the secrets of apps deployed during the outage', async () => {
      // The test's own client reconnects too; until then its reads fail like anyone's.
      const listed = await store.listSecrets().catch(() => []);
      const have = new Set(listed.map((s) => `${s.namespace}/${s.name}`));
      return want.every((k) => have.has(k));
    }, 45_000);
    console.log(`# caught up ${Date.now() - startedAt} ms after ZooKeeper restarted`);
    await sleep(3000);
    loading = false;
    await load;

    assert.equal(cluster.replicas.filter(leadsPerLog).length, 1, 'exactly one leader after the restart');
    const stored = await store.listSecrets();
    assert.deepEqual(stored.flatMap((s) => secretProblems(s, root)), []);
    assert.deepEqual(stored.map((s) => `${s.namespace}/${s.name}`).sort(), want, 'each expected secret exactly once');
    for (const s of stored) assert.equal(s.version, 0, `${s.namespace}/${s.name} written once`);
    assert.equal(await cluster.rootCertPem(), root);
    const createdAfter = cluster.replicas.map((r) => ({ name: r.name, keys: createdByLog(r).slice(marks.get(r.name)) }));
    const writers = createdAfter.filter((c) => c.keys.length > 0);
    assert.equal(writers.length, 1, `one replica wrote the catch-up secrets: ${JSON.stringify(createdAfter)}`);
    assert.deepEqual(writers[0].keys.sort(), expectedSecrets(outageApps));
    const expired = cluster.replicas.filter((r) => r.logs().some((l) => /session expired/.test(l.msg))).map((r) => r.name);
    console.log(`# sessions expired during the outage: ${expired.length ? expired.join(', ') : 'none (resumed after the restart)'}`);

    const duringOutage = calls.filter((c) => c.at >= stoppedAt && c.at < startedAt);
    const failed = calls.filter((c) => c.error);
    console.log(`# CreateCertificate: ${calls.length} calls, ${duringOutage.length} while ZooKeeper was down, ${failed.length} failed`);
    assert.deepEqual(failed.slice(0, 3), [], 'every CreateCertificate succeeded');
    for (const r of cluster.replicas) {
      assert.ok(duringOutage.filter((c) => c.replica === r.name).length >= 20, `${r.name} signed throughout the outage`);
    }
  } finally {
    loading = false;
    await load;
    for (const c of clients.values()) c.close();
    if (!cluster.zk.running) await cluster.zk.start();
  }
});
