/**
 * The whole chain as users run it: `citadel server` (a process) watching the Marathon simulator,
 * `citadel token create`, and `citadel agent` processes on two hosts. Tasks land on agent-1 only.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fs, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { startCitadelServer } from '../helpers/citadel-server';
import { bundleProblems } from './bundle-check';
import { waitFor } from '../helpers/wait';

const MAIN = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

async function deploy(url: string, id: string, sa: string): Promise<void> {
  const res = await fetch(`${url}/v2/apps`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id, cmd: 'sleep 1000', instances: 1, labels: { 'istio.io/service-account': sa } }),
  });
  assert.equal(res.status, 201);
}

test('citadel server + Marathon + citadel agent: a node gets the identities of the tasks on its host, and loses them when they go', async (t) => {
  const sim = new MarathonSimulator({ agents: ['agent-1'] });
  const url = await sim.listen(0);
  t.after(() => sim.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'citadel-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await deploy(url, '/shop/cart', 'cart');
  await deploy(url, '/shop/payments', 'payments');
  const store = `file:${dir}/data`;
  const server = await startCitadelServer(['--marathon', url, '--store', store]);
  t.after(() => server.stop());
  const rootFile = path.join(dir, 'data', 'ca', 'istio-ca-secret', 'ca-cert.pem');
  const root = readFileSync(rootFile, 'utf8');

  const agents: ChildProcess[] = [];
  t.after(async () => {
    for (const a of agents) if (a.exitCode === null && a.signalCode === null) a.kill('SIGTERM');
  });
  const startAgent = (host: string) => {
    const token = spawnSync(process.execPath, [MAIN, 'token', 'create', '--host', host, '--store', store], { encoding: 'utf8' });
    assert.equal(token.status, 0, token.stderr);
    const certsDir = path.join(dir, `certs-${host}`);
    const a = spawn(process.execPath, [MAIN, 'agent', '--monitoring-port', '0', '--ca-address', `127.0.0.1:${server.grpcPort}`, '--ca-root', rootFile, '--join-token', token.stdout.trim(), '--host', host, '--certs-dir', certsDir], { stdio: 'ignore' });
    agents.push(a);
    return certsDir;
  };
  const one = startAgent('agent-1');
  const two = startAgent('agent-2');

  await waitFor('cart and payments on agent-1', async () => (await bundleProblems(one, 'shop', 'cart', root)).length === 0 && (await bundleProblems(one, 'shop', 'payments', root)).length === 0, 15_000);
  // agent-2 runs no task: it is entitled to nothing (its node certificate is there, no identity directory).
  await waitFor('agent-2 attested', async () => (await fs.readdir(path.join(two, '.citadel-agent')).catch(() => [] as string[])).includes('node.pem'), 10_000);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual((await fs.readdir(two)).filter((e) => !e.startsWith('.')), []);

  // The app is deleted: its directory goes from agent-1.
  const del = await fetch(`${url}/v2/apps/shop/payments`, { method: 'DELETE' });
  assert.ok(del.ok);
  await waitFor('payments removed', async () => !(await fs.stat(path.join(one, 'shop', 'payments')).catch(() => undefined)), 5000);
  assert.deepEqual(await bundleProblems(one, 'shop', 'cart', root), []);

  // The monitoring port counts what happened and reports ready.
  const metrics = await (await fetch(`http://127.0.0.1:${server.monitoringPort}/metrics`)).text();
  assert.match(metrics, /citadel_server_node_attestation_count\{result="ok"\} 2/);
  const health = await fetch(`http://127.0.0.1:${server.monitoringPort}/healthz`);
  assert.equal(health.status, 200, await health.text());
});
