import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { FileStore } from '../../src/store/file-store';
import { checkBundle } from '../../src/pki/bundle';
import { startCitadelServer } from '../helpers/citadel-server';
import { tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';

async function deploy(url: string, id: string, sa?: string, extraLabels: Record<string, string> = {}) {
  const res = await fetch(`${url}/v2/apps`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id, cmd: 'sleep 1000', instances: 1, labels: { ...(sa ? { 'istio.io/service-account': sa } : {}), ...extraLabels } }),
  });
  assert.equal(res.status, 201);
}

test('citadel server against the simulator: events create secrets within 1 s; invalid identities are skipped with a logged reason', async (t) => {
  const sim = new MarathonSimulator({ agents: ['agent-1', 'agent-2'] });
  const url = await sim.listen(0);
  t.after(() => sim.close());
  sim.state.createApp({ id: '/prod/web', cmd: 'sleep 1', labels: { 'istio.io/service-account': 'web' } });
  const dir = tempDir();
  const server = await startCitadelServer(['--marathon', url, '--store', `file:${dir}/data`, '--no-grpc']);
  t.after(() => server.stop());
  const store = await FileStore.open(path.join(dir, 'data'));
  assert.ok(await store.getSecret('prod', 'istio.web'), 'initial reconcile wrote prod/istio.web');

  for (const [i, ns] of ['alpha', 'beta', 'gamma'].entries()) {
    await deploy(url, `/${ns}/svc${i}`, `account-${i}`);
    const s = await waitFor(`${ns}/istio.account-${i} within 1 s`, () => store.getSecret(ns, `istio.account-${i}`), { timeoutMs: 1000, intervalMs: 10 });
    assert.deepEqual(checkBundle(s).problems, []);
  }

  await deploy(url, '/prod/bad', undefined, { 'istio.io/namespace': 'Not_A_Label' });
  const line = await server.waitForLog((l) => l.msg === 'marathon workload has no identity' && l.id === '/prod/bad', 5000);
  assert.match(String(line.reason), /namespace "Not_A_Label" must be a DNS label/);
  await deploy(url, '/prod/after-bad', 'after');
  await waitFor('prod/istio.after: the view keeps working after a bad definition', () => store.getSecret('prod', 'istio.after'), 1000);
  assert.equal((await store.listSecrets()).some((s) => s.namespace === 'Not_A_Label'), false);
});

test('the event stream dropped mid-way (Marathon restarted, changes made meanwhile) loses nothing', async (t) => {
  const sim = new MarathonSimulator();
  const url = await sim.listen(0);
  const port = Number(new URL(url).port);
  t.after(() => sim.close());
  const dir = tempDir();
  const server = await startCitadelServer(['--marathon', url, '--store', `file:${dir}/data`, '--no-grpc', '--secret-delete-delay', '1s']);
  t.after(() => server.stop());
  const store = await FileStore.open(path.join(dir, 'data'));
  await deploy(url, '/keep/app', 'keeper');
  await deploy(url, '/doomed/app', 'doomed');
  await waitFor('doomed/istio.doomed', () => store.getSecret('doomed', 'istio.doomed'), 2000);

  await sim.close(); // every stream and connection closed
  // While Marathon is away (no events reach anyone), the cluster changes.
  sim.state.createApp({ id: '/during/outage', cmd: 'sleep 1', labels: { 'istio.io/service-account': 'late' } });
  sim.state.deleteApp('/doomed/app');
  await new Promise((r) => setTimeout(r, 500));
  await sim.listen(port);

  await waitFor('during/istio.late created after the re-list', () => store.getSecret('during', 'istio.late'), 15_000);
  await waitFor('doomed/istio.doomed deleted after the re-list', async () => (await store.getSecret('doomed', 'istio.doomed')) === undefined, 15_000);
  assert.ok(await store.getSecret('keep', 'istio.keeper'));
});

test('a standby Marathon redirects the event stream to the leader and the server follows it', async (t) => {
  const leader = new MarathonSimulator();
  const leaderUrl = await leader.listen(0);
  t.after(() => leader.close());
  const standby = new MarathonSimulator({ standbyOf: leaderUrl });
  const standbyUrl = await standby.listen(0);
  t.after(() => standby.close());
  const dir = tempDir();
  const server = await startCitadelServer(['--marathon', standbyUrl, '--store', `file:${dir}/data`, '--no-grpc']);
  t.after(() => server.stop());
  const store = await FileStore.open(path.join(dir, 'data'));
  await deploy(leaderUrl, '/via/leader', 'followed');
  await waitFor('via/istio.followed: the event reached the server through the redirect', () => store.getSecret('via', 'istio.followed'), 2000);
});

test('restarting citadel server keeps the root and the secrets', async (t) => {
  const sim = new MarathonSimulator();
  const url = await sim.listen(0);
  t.after(() => sim.close());
  sim.state.createApp({ id: '/prod/api', cmd: 'sleep 1', labels: { 'istio.io/service-account': 'api' } });
  const dir = tempDir();
  const args = ['--marathon', url, '--store', `file:${dir}/data`, '--no-grpc'];
  const first = await startCitadelServer(args);
  const store = await FileStore.open(path.join(dir, 'data'));
  const before = (await store.listSecrets()).map((s) => [s.name, s.metadata.serialNumber, s.rootCertPem]);
  const root = (await store.getCaSecret())!.caCertPem;
  assert.equal(await first.stop(), 0, 'clean exit on SIGTERM');
  const second = await startCitadelServer(args);
  t.after(() => second.stop());
  const initial = await second.waitForLog((l) => l.msg === 'initial reconcile done');
  assert.equal(initial.created, 0);
  assert.equal(initial.refreshed, 0);
  assert.equal((await store.getCaSecret())!.caCertPem, root);
  assert.deepEqual((await store.listSecrets()).map((s) => [s.name, s.metadata.serialNumber, s.rootCertPem]), before);
});
