/**
 * The deployment files in deploy/, each checked by the tool its users would use: Marathon (the
 * simulator, which validates as Marathon does), systemd-analyze, promtool, and Grafana's JSON
 * model (plus: every flag and metric they name exists in citadel).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { buildProgram } from '../../src/cli/main';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { repoRoot } from '../helpers/marathon-sim';

const DEPLOY = path.join(repoRoot, 'deploy');
const read = (p: string) => fs.readFileSync(path.join(DEPLOY, p), 'utf8');

/** The tool, or a skip (a fail in CI, which sets CITADEL_REQUIRE_TOOLS=1) saying how to install it. */
function tool(t: TestContext, name: string, pkg: string): boolean {
  if (spawnSync('sh', ['-c', `command -v ${name}`]).status === 0) return true;
  const why = `${name} is not installed (Debian: apt-get install ${pkg})`;
  if (process.env.CITADEL_REQUIRE_TOOLS === '1') throw new Error(why);
  t.skip(why);
  return false;
}

/** Options of `citadel <command>` that commander does not know. */
function unknownOptions(command: string, args: string[]): string[] {
  const cmd = buildProgram().commands.find((c) => c.name() === command)!;
  return cmd.parseOptions(args).unknown.filter((a) => a.startsWith('-'));
}

/** Every metric name citadel registers (`name: 'citadel_...'` in src/). */
function registeredMetrics(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) for (const m of fs.readFileSync(p, 'utf8').matchAll(/['"](citadel_[a-z0-9_]+)['"]/g)) names.add(m[1]);
    }
  };
  walk(path.join(repoRoot, 'src'));
  return names;
}

/** Metric names in a PromQL expression (histogram series mapped to their metric). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(citadel_[a-z0-9_]+)/g)].map((m) => m[1].replace(/_(bucket|sum|count)$/, (s) => (registeredMetrics().has(m[1]) ? s : '')));
}

describe('deploy/', () => {
  it('marathon/citadel-server.json: Marathon accepts it; replicas with hostname UNIQUE, /healthz checks, files for the KEK and ZooKeeper credentials; every flag exists', async () => {
    const def = JSON.parse(read('marathon/citadel-server.json'));
    assert.ok(def.instances >= 2, 'replicas');
    assert.deepEqual(def.constraints, [['hostname', 'UNIQUE']]);
    assert.equal(def.healthChecks[0].path, '/healthz');
    assert.equal(def.portDefinitions[def.healthChecks[0].portIndex].name, 'monitoring');
    const args = (def.cmd as string).replace(/^exec citadel server /, '').replace(/\$PORT_\w+/g, '0').split(/\s+/);
    assert.match(def.cmd, /--store zk:\/\//);
    assert.match(def.cmd, /--kek-file \/etc\/citadel\/kek/);
    assert.match(def.cmd, /--zk-auth-file \/etc\/citadel\/zk-auth/);
    assert.deepEqual(unknownOptions('server', args), []);
    const sim = new MarathonSimulator();
    const url = await sim.listen(0);
    try {
      const res = await fetch(`${url}/v2/apps`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(def) });
      assert.equal(res.status, 201, await res.text());
      const back = (await (await fetch(`${url}/v2/apps/citadel/server`)).json()) as { app: { constraints: unknown; healthChecks: Array<{ path: string }> } };
      assert.deepEqual(back.app.constraints, [['hostname', 'UNIQUE']]);
      assert.equal(back.app.healthChecks[0].path, '/healthz');
    } finally {
      await sim.close();
    }
  });

  it('systemd/citadel-agent.service: systemd-analyze verify finds nothing; every agent flag exists', (t) => {
    if (!tool(t, 'systemd-analyze', 'systemd')) return;
    const unit = path.join(DEPLOY, 'systemd', 'citadel-agent.service');
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', `systemd-analyze verify complained:\n${r.stderr}`);
    const exec = /ExecStart=\/usr\/bin\/env citadel agent((?:.*\\\n)*.*)/.exec(fs.readFileSync(unit, 'utf8'))![1];
    const args = exec.replace(/\\\n/g, ' ').trim().split(/\s+/).map((a) => a.replace('%H', 'host-1'));
    assert.deepEqual(unknownOptions('agent', args), []);
  });

  it('prometheus/alerts.yml: promtool checks the rules and their unit tests pass; every metric exists', (t) => {
    if (!tool(t, 'promtool', 'prometheus')) return;
    const check = spawnSync('promtool', ['check', 'rules', path.join(DEPLOY, 'prometheus', 'alerts.yml')], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const test = spawnSync('promtool', ['test', 'rules', path.join(DEPLOY, 'prometheus', 'alerts.test.yml')], { encoding: 'utf8' });
    assert.equal(test.status, 0, test.stdout + test.stderr);
    const known = registeredMetrics();
    for (const m of metricsIn(read('prometheus/alerts.yml'))) if (m !== 'citadel_expected_nodes') assert.ok(known.has(m), `alerts.yml uses ${m}, which citadel does not export`);
  });

  it('grafana/citadel.json: a Grafana dashboard model; panels do not overlap; every metric exists', () => {
    const dash = JSON.parse(read('grafana/citadel.json'));
    assert.equal(dash.uid, 'marathon-citadel');
    assert.ok(dash.schemaVersion >= 30);
    const known = registeredMetrics();
    const boxes: Array<{ x: number; y: number; w: number; h: number; title: string }> = [];
    for (const p of dash.panels) {
      assert.ok(p.gridPos && p.title, 'every panel has a place and a title');
      for (const b of boxes) {
        const overlap = p.gridPos.x < b.x + b.w && b.x < p.gridPos.x + p.gridPos.w && p.gridPos.y < b.y + b.h && b.y < p.gridPos.y + p.gridPos.h;
        assert.ok(!overlap, `panels "${p.title}" and "${b.title}" overlap`);
      }
      boxes.push({ ...p.gridPos, title: p.title });
      for (const target of p.targets ?? []) for (const m of metricsIn(target.expr)) assert.ok(known.has(m), `panel "${p.title}" uses ${m}, which citadel does not export`);
    }
    for (const topic of ['Issuance', 'Errors', 'Expiry', 'node agents', 'SDS streams', 'xDS sync']) assert.ok(dash.panels.some((p: { title: string }) => p.title.toLowerCase().includes(topic.toLowerCase())), topic);
  });
});
