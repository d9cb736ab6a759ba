/**
 * Three `citadel server` replicas on one ZooKeeper: exactly one leader writes secrets, every
 * replica signs; the leader SIGKILLed, another takes over within the session timeout and no
 * secret is lost, duplicated or re-rooted.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { waitFor } from '../helpers/wait';
import {
  AppSpec, appsIn, createCertificateFor, createdByLog, expectedSecrets, HaCluster, isElected, leadsPerLog, Replica, secretProblems,
} from './cluster';

const SESSION_TIMEOUT_MS = 4000;
let cluster: HaCluster;
const apps: AppSpec[] = appsIn('team', 6);

before(async () => {
  cluster = await HaCluster.start({ replicas: 3, sessionTimeout: `${SESSION_TIMEOUT_MS / 1000}s`, resyncInterval: '2s' });
});
after(async () => {
  await cluster?.close();
});

/** The store's secrets as `ns/name` -> version, after checking each is valid under the root. */
async function storedSecrets(root: string): Promise<Map<string, number>> {
  const all = await (await cluster.store()).listSecrets();
  const problems = all.flatMap((s) => secretProblems(s, root));
  assert.deepEqual(problems, []);
  return new Map(all.map((s) => [`${s.namespace}/${s.name}`, s.version]));
}

async function waitForSecrets(keys: string[], timeoutMs: number): Promise<void> {
  const store = await cluster.store();
  await waitFor(`secrets ${keys.join(', ')}`, async () => {
    const have = new Set((await store.listSecrets()).map((s) => `${s.namespace}/${s.name}`));
    return keys.every((k) => have.has(k));
  }, timeoutMs);
}

const leaders = () => cluster.alive().filter(leadsPerLog);

async function signsOnEveryReplica(replicas: Replica[], root: string): Promise<void> {
  for (const [i, r] of replicas.entries()) {
    const client = await cluster.workloadClient(r, 'team-0', 'sa-0');
    try {
      await createCertificateFor(client, 'team-0', 'sa-0', root);
    } catch (err) {
      throw new Error(`replica ${r.name} (#${i}) did not sign: ${(err as Error).message}`);
    }
    client.close();
  }
}

test('three replicas elect exactly one leader; only it writes secrets; every replica signs', async () => {
  await waitFor('one replica to log that it was elected', () => leaders().length === 1, 20_000);
  const [leader] = leaders();
  const followers = cluster.replicas.filter((r) => r !== leader);
  for (const f of followers) assert.equal(f.logs().some(isElected), false, `${f.name} never logs that it leads`);

  for (const app of apps) await cluster.deploy(app);
  const want = expectedSecrets(apps);
  await waitForSecrets(want, 30_000);
  // A few resync intervals: followers that were going to write would have by now.
  await new Promise((r) => setTimeout(r, 5000));

  const root = await cluster.rootCertPem();
  const stored = await storedSecrets(root);
  assert.deepEqual([...stored.keys()].sort(), want);
  for (const [key, version] of stored) assert.equal(version, 0, `${key} was written once, never overwritten`);
  assert.deepEqual(createdByLog(leader).sort(), want, 'the leader logged creating every secret, each once');
  for (const f of followers) assert.deepEqual(createdByLog(f), [], `follower ${f.name} wrote nothing`);
  for (const r of cluster.replicas) assert.equal(r.logs().filter((l) => l.msg === 'refreshed secret').length, 0, `${r.name} refreshed nothing`);

  await signsOnEveryReplica(cluster.replicas, root);
});

test('the leader SIGKILLed: another replica leads within the session timeout; no secret lost or duplicated; same root', async () => {
  const [old] = leaders();
  assert.ok(old, 'a leader before the failover');
  const root = await cluster.rootCertPem();
  const before = await storedSecrets(root);
  const survivors = cluster.replicas.filter((r) => r !== old);
  const electedBefore = new Map(survivors.map((r) => [r, r.logs().filter(isElected).length]));

  const t0 = Date.now();
  await old.stop('SIGKILL');
  await waitFor('a survivor to be elected', () => survivors.some((r) => r.logs().filter(isElected).length > electedBefore.get(r)!), SESSION_TIMEOUT_MS * 3);
  const failoverMs = Date.now() - t0;
  console.log(`# failover: new leader elected ${failoverMs} ms after SIGKILL (session timeout ${SESSION_TIMEOUT_MS} ms)`);
  assert.ok(failoverMs <= SESSION_TIMEOUT_MS + 3000, `failover took ${failoverMs} ms, more than the session timeout plus 3 s`);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(leaders().length, 1, 'exactly one leader among the survivors');
  const [leader] = leaders();

  // The new leader re-read the store: nothing recreated, nothing rewritten.
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(await cluster.rootCertPem(), root, 'the root is unchanged');
  const after = await storedSecrets(root);
  assert.deepEqual([...after.entries()].sort(), [...before.entries()].sort(), 'the same secrets at the same versions');
  for (const r of survivors) assert.deepEqual(createdByLog(r), [], `${r.name} created nothing before new apps arrived`);

  const late: AppSpec = { id: '/late/web', namespace: 'late', serviceAccount: 'web' };
  await cluster.deploy(late);
  const lateKeys = expectedSecrets([late]);
  await waitForSecrets(lateKeys, 30_000);
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(createdByLog(leader).sort(), lateKeys, 'the new leader created the new app secrets');
  for (const r of survivors.filter((s) => s !== leader)) assert.deepEqual(createdByLog(r), [], `${r.name} wrote nothing`);
  const final = await storedSecrets(root);
  assert.deepEqual([...final.keys()].sort(), [...new Set([...before.keys(), ...lateKeys])].sort());
  for (const [key, version] of final) assert.equal(version, 0, `${key} exists once, written once`);

  await signsOnEveryReplica(survivors, root);
});
