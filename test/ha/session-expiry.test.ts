/**
 * A leader frozen (SIGSTOP, like a long GC pause or a suspended VM) for longer than its ZooKeeper
 * session timeout: its session expires and another replica leads. Thawed, it starts a new session,
 * re-joins the election as a follower and re-arms its watches: when it leads again, a secret
 * deleted behind its back is recreated from the watch alone (the resync timer is an hour away).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sleep } from '../../src/common/backoff';
import { waitFor } from '../helpers/wait';
import { AppSpec, appsIn, createCertificateFor, createdByLog, expectedSecrets, HaCluster, isElected, leadsPerLog, secretProblems } from './cluster';

const SESSION_TIMEOUT_MS = 3000;

/** How many secrets the replica's controller keeps (citadel_secret_controller_secrets, set by a leader's pass). */
async function managedSecrets(r: HaCluster['replicas'][number]): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${r.monitoringPort}/metrics`)).text();
  return Number(/^citadel_secret_controller_secrets (\S+)$/m.exec(text)?.[1]);
}
let cluster: HaCluster;

before(async () => {
  cluster = await HaCluster.start({ replicas: 2, sessionTimeout: `${SESSION_TIMEOUT_MS / 1000}s`, resyncInterval: '1h' });
});
after(async () => {
  for (const r of cluster?.replicas ?? []) r.child.kill('SIGCONT');
  await cluster?.close();
});

test('session expiry: the expired leader gets a new session, re-joins the election and re-arms its watches', async () => {
  const apps = appsIn('expiry', 3);
  for (const app of apps) await cluster.deploy(app);
  const store = await cluster.store();
  await waitFor('the initial secrets', async () => (await store.listSecrets()).length === expectedSecrets(apps).length, 30_000);
  await waitFor('one leader', () => cluster.replicas.filter(leadsPerLog).length === 1, 10_000);
  const frozen = cluster.replicas.find(leadsPerLog)!;
  const other = cluster.replicas.find((r) => r !== frozen)!;
  const root = await cluster.rootCertPem();

  // Freeze the leader past its session timeout: ZooKeeper expires the session and the other replica leads.
  frozen.child.kill('SIGSTOP');
  try {
    await waitFor(`${other.name} to be elected while ${frozen.name} is frozen`, () => leadsPerLog(other), SESSION_TIMEOUT_MS * 4);
    await sleep(1000);
  } finally {
    frozen.child.kill('SIGCONT');
  }
  await frozen.waitForLog((l) => /session expired/.test(l.msg), 20_000);
  const expiredAt = frozen.logs().findIndex((l) => /session expired/.test(l.msg));
  await waitFor(
    `${frozen.name} to connect with a new session`,
    () => frozen.logs().slice(expiredAt).some((l) => l.msg === 'ZooKeeper connection state' && l.state === 'connected'),
    20_000,
  );
  await sleep(1000);
  assert.equal(leadsPerLog(frozen), false, `${frozen.name} follows after its session expired`);
  assert.equal(leadsPerLog(other), true, `${other.name} still leads`);
  const frozenCreated = createdByLog(frozen).length;

  // The thawed replica signs; the leader alone writes the secrets of a new app.
  const client = await cluster.workloadClient(frozen, 'expiry-0', 'sa-0');
  try {
    await createCertificateFor(client, 'expiry-0', 'sa-0', root);
  } finally {
    client.close();
  }
  const late: AppSpec = { id: '/after-expiry/api', namespace: 'after-expiry', serviceAccount: 'api' };
  await cluster.deploy(late);
  await waitFor(`${other.name} to write the new app's secrets`, async () => expectedSecrets([late]).every((k) => createdByLog(other).includes(k)), 20_000);
  await sleep(2000);
  assert.equal(createdByLog(frozen).length, frozenCreated, `${frozen.name} wrote nothing as a follower`);

  // The leader dies: only a candidate re-registered in the new session can take over.
  const electedBefore = frozen.logs().filter(isElected).length;
  await other.stop('SIGKILL');
  await waitFor(`${frozen.name} to be elected again`, () => frozen.logs().filter(isElected).length > electedBefore, SESSION_TIMEOUT_MS * 4);
  // On election it re-reads the store: it keeps every secret, those the other wrote included, before it is tested
  const allSecrets = expectedSecrets([...apps, late]).length;
  await waitFor(`${frozen.name} to re-read the store as leader (${allSecrets} secrets)`, async () => (await managedSecrets(frozen)) === allSecrets, 10_000);

  // Watches: delete a secret behind its back; only a re-armed watch can tell it before the hourly resync.
  const victim = await store.getSecret('expiry-1', 'istio.sa-1');
  assert.ok(victim);
  const createdBefore = createdByLog(frozen).length;
  const logMark = frozen.logs().length;
  assert.equal(await store.deleteSecret('expiry-1', 'istio.sa-1', victim.version), true);
  await waitFor('the deleted secret to be recreated', async () => (await store.getSecret('expiry-1', 'istio.sa-1')) !== undefined, 15_000);
  // The replica logs the creation after the write: its log line can reach us after the znode does.
  await waitFor(`${frozen.name} to log the recreation`, () => createdByLog(frozen).length > createdBefore, 5_000);
  assert.deepEqual(createdByLog(frozen).slice(createdBefore), ['expiry-1/istio.sa-1']);
  // A resync would have said so; the watch path recreates silently.
  assert.equal(frozen.logs().slice(logMark).some((l) => /was deleted while its account exists/.test(l.msg)), false, 'recreated from the watch, not a resync');

  const stored = await store.listSecrets();
  assert.deepEqual(stored.flatMap((s) => secretProblems(s, root)), []);
  assert.deepEqual(stored.map((s) => `${s.namespace}/${s.name}`).sort(), expectedSecrets([...apps, late]));
  assert.equal(await cluster.rootCertPem(), root);
});
