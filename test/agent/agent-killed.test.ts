import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, promises as fs, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { it } from 'node:test';
import { newJoinToken } from '../../src/server/join-token';
import { placeApp, putWorkloadSecret, removeApp, startCaFixture } from '../server/fixtures';
import { bundleProblems } from './bundle-check';
import { waitFor } from '../helpers/wait';

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

const MAIN = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

it('the agent killed (SIGKILL) in the middle of writing leaves no torn identity directory', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'citadel-kill-'));
  const certsDir = path.join(dir, 'certs');
  const rootFile = path.join(dir, 'root-cert.pem');
  const f = await startCaFixture({ dir });
  writeFileSync(rootFile, f.ca.rootCertPem);
  const accounts = Array.from({ length: 24 }, (_, i) => `sa-${i}`);
  for (const sa of accounts) {
    await putWorkloadSecret(f, 'churn', sa);
    placeApp(f.view, `/churn/${sa}`, 'churn', sa, ['agent-k']);
  }
  const t = newJoinToken('agent-k', 60_000);
  await f.store.putJoinToken(t.record);
  let child: ChildProcess | undefined;
  const startAgent = () => {
    child = spawn(process.execPath, [MAIN, 'agent', '--monitoring-port', '0', '--ca-address', f.address, '--ca-root', rootFile, '--join-token', t.token, '--host', 'agent-k', '--certs-dir', certsDir, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code, sig) => {
      if (sig !== 'SIGKILL' && code !== 0 && code !== null) process.stderr.write(`agent exited ${code}: ${err}\n`);
    });
  };
  // Churn: rotate every secret and move some identities on and off the node, all the time.
  let churning = true;
  const churn = (async () => {
    for (let round = 0; churning; round++) {
      for (const sa of accounts) {
        if (!churning) break;
        await putWorkloadSecret(f, 'churn', sa);
      }
      const sa = accounts[round % accounts.length];
      if (round % 2) placeApp(f.view, `/churn/${sa}`, 'churn', sa, ['agent-k']);
      else removeApp(f.view, `/churn/${sa}`);
    }
  })();
  try {
    let checked = 0;
    for (let kill = 0; kill < 8; kill++) {
      startAgent();
      await waitFor('the agent writing', async () => (await fs.readdir(path.join(certsDir, 'churn')).catch(() => [])).length > 0, 10_000);
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 400));
      await killAndWait(child!);
      // What a sidecar would see now: every visible identity directory whole and valid.
      for (const sa of await fs.readdir(path.join(certsDir, 'churn')).catch(() => [] as string[])) {
        if (sa.startsWith('.')) continue;
        assert.deepEqual(await bundleProblems(certsDir, 'churn', sa, f.ca.rootCertPem), [], `after kill ${kill}`);
        checked++;
      }
    }
    assert.ok(checked > 0);
    // A final start repairs the leftovers and converges.
    startAgent();
    churning = false;
    await churn;
    const placed = new Set(f.view.identitiesOnHost('agent-k').map((i) => i.serviceAccount));
    await waitFor('convergence', async () => {
      const present = (await fs.readdir(path.join(certsDir, 'churn'))).filter((e) => !e.startsWith('.'));
      if (present.length !== placed.size || !present.every((p) => placed.has(p))) return false;
      for (const sa of present) {
        const secret = await f.store.getSecret('churn', `istio.${sa}`);
        if ((await fs.readFile(path.join(certsDir, 'churn', sa, 'cert-chain.pem'), 'utf8')) !== secret!.certChainPem) return false;
      }
      return true;
    }, 10_000);
    const leftovers = (await fs.readdir(path.join(certsDir, 'churn'))).filter((e) => e.startsWith('.'));
    assert.deepEqual(leftovers, [], 'temporary directories left behind');
  } finally {
    churning = false;
    await churn;
    if (child) await killAndWait(child);
    await f.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
