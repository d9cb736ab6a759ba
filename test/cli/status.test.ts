/** citadel status and proxy-status against a real citadel server process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { startCitadelServer } from '../helpers/citadel-server';
import { cliPath, tempDir } from '../helpers/pki';

const citadel = (...args: string[]) => {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('citadel status: root, leader, store, secrets, the soonest expiry, recent errors; -o json; an unreachable server is one line', async (t) => {
  const sim = new MarathonSimulator({ agents: ['agent-1'] });
  const url = await sim.listen(0);
  t.after(() => sim.close());
  sim.state.createApp({ id: '/prod/api', cmd: 'sleep 1', labels: { 'istio.io/service-account': 'api' } });
  const server = await startCitadelServer(['--marathon', url, '--store', `file:${tempDir()}/data`]);
  t.after(() => server.stop());
  const at = `http://127.0.0.1:${server.monitoringPort}`;
  const text = citadel('status', '--server', at);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /: healthy\n/);
  assert.match(text.out, /root: {9}O=cluster\.local, sha256 [0-9A-F:]{95}, expires \d{4}-.*\(in \d+d/);
  assert.match(text.out, /leader: {7}yes/);
  assert.match(text.out, /secrets: {6}2 for 2 identities; soonest expiry \d{4}-/);
  const json = JSON.parse(citadel('status', '--server', at, '-o', 'json').out);
  assert.equal(json.leader, true);
  assert.equal(json.secrets, 2);
  assert.equal(json.marathon.connected, true);
  assert.deepEqual(json.recentErrors.map((e: { level: string; msg: string }) => `${e.level} ${e.msg}`), ['warn private keys are stored unencrypted; pass --kek-file to encrypt them at rest']);
  const none = citadel('proxy-status', '--server', at);
  assert.equal(none.code, 0, none.err);
  assert.match(none.out, /no proxy is connected/);
  const gone = citadel('status', '--server', 'http://127.0.0.1:1');
  assert.equal(gone.code, 2);
  assert.equal(gone.err.trim().split('\n').length, 1);
  assert.match(gone.err, /^citadel: --server http:\/\/127\.0\.0\.1:1: cannot reach the monitoring port \(.*\); is citadel server running there\?/);
});
