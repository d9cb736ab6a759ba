/** Issue: `--workload-cert-ttl 5m` (default min grace 10m) and a 4 s TTL rewrote secrets hundreds of times a second. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { FileStore } from '../../src/store/file-store';
import { startCitadelServer } from '../helpers/citadel-server';
import { repoRoot } from '../helpers/marathon-sim';
import { tempDir } from '../helpers/pki';

test('a minimum grace period not shorter than the TTL is refused at start, in one line, and nothing is written', () => {
  const dir = tempDir();
  const run = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'src', 'cli', 'main.js'), 'server', '--store', `file:${dir}/data`, '--workload-cert-ttl', '5m', '--marathon', 'http://127.0.0.1:1'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(run.status, 2, run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0], /^citadel: --workload-cert-min-grace-period \(600s\) must be shorter than --workload-cert-ttl \(300s\)/);
  // refused before the store is opened: no directory, so no root, no secret, no lock file
  assert.deepEqual(readdirSync(dir), [], 'nothing written under the store\'s parent');
  // and a valid setting on the same store writes there (the check above would see it)
  const ok = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'src', 'cli', 'main.js'), 'ca', 'init', '--store', `file:${dir}/data`], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(readdirSync(dir), ['data']);
});

test('a 4 s TTL rotates each secret about every 2 s, and no faster (the 60 s back-dating is not part of the lifetime)', async (t) => {
  const sim = new MarathonSimulator({ agents: ['agent-1'] });
  const url = await sim.listen(0);
  t.after(() => sim.close());
  sim.state.createApp({ id: '/prod/api', cmd: 'sleep 1000' });
  const dir = tempDir();
  const server = await startCitadelServer(['--marathon', url, '--store', `file:${dir}/data`, '--no-grpc', '--workload-cert-ttl', '4s', '--workload-cert-min-grace-period', '1s']);
  t.after(() => server.stop());
  const store = await FileStore.open(path.join(dir, 'data'));
  t.after(() => store.close());
  const serials = new Set<string>();
  let firstAt = 0;
  const end = Date.now() + 9000;
  while (Date.now() < end) {
    const s = await store.getSecret('prod', 'istio.default').catch(() => undefined);
    if (s) {
      firstAt ||= Date.now();
      serials.add(s.metadata.serialNumber);
      const left = Date.parse(s.metadata.notAfter) - Date.now();
      assert.ok(left > 1000, `only ${left} ms left: the rotation due at 2 s left was late`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const seconds = (Date.now() - firstAt) / 1000;
  // One generation at start, then one per 2 s: about 5 in 9 s; a refresh loop would give hundreds.
  assert.ok(serials.size >= 3 && serials.size <= Math.ceil(seconds / 2) + 2, `${serials.size} generations in ${seconds.toFixed(1)} s`);
  const version = (await store.getSecret('prod', 'istio.default'))!.version;
  assert.ok(version <= Math.ceil(seconds / 2) + 2, `version ${version} after ${seconds.toFixed(1)} s`);
});
