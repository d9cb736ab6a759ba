/**
 * The README's five-minute tour, run as written: its shell blocks, in order, in one bash, with a
 * pause before every command as a person typing them would leave. Each comment that says what a
 * command prints is checked against what it printed, so the README cannot drift from the binary.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { requireEnvoy } from '../helpers/envoy';
import { PACKAGE_ROOT } from '../../src/common/package-root';

/** The ```sh blocks of the README section "A five-minute tour". */
export function tourBlocks(readme: string): string[] {
  const start = readme.indexOf('\n## A five-minute tour');
  assert.ok(start >= 0, 'the README has a five-minute tour');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

test("the README's five-minute tour works as written", { timeout: 180_000 }, async (t) => {
  const envoy = requireEnvoy(t);
  if (!envoy) return;
  const blocks = tourBlocks(readFileSync(path.join(PACKAGE_ROOT, 'README.md'), 'utf8'));
  assert.ok(blocks.length >= 5, `the tour has its blocks (found ${blocks.length})`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-tour-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The tour's directory becomes a fresh one; the rest runs verbatim.
  const script = [
    // Not -e: a refused connection is one of the outcomes the tour shows (curl exits 52).
    // Whatever happens, nothing the tour started outlives it.
    "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
    "trap 'sleep 1.5' DEBUG",
    ...blocks.map((b) => b.replaceAll('/tmp/tour', dir)),
  ].join('\n');
  const child = spawn('bash', ['-c', script], {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, PATH: `${path.dirname(envoy)}:${process.env.PATH}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const logs = ['server.log', 'agent.log', 'envoy-api.log', 'envoy-web.log', 'admission.log'].map((f) => {
    try {
      return `--- ${f}\n${readFileSync(path.join(dir, f), 'utf8').split('\n').slice(-15).join('\n')}`;
    } catch {
      return `--- ${f}: none`;
    }
  });
  const context = `\n--- stdout\n${out}\n--- stderr\n${err}\n${logs.join('\n')}`;
  assert.equal(code, 0, `the tour ends with its jobs still running to be stopped${context}`);
  assert.doesNotMatch(err, /^citadel: /m, `no citadel command failed${context}`);

  // What the comments in the README say each command prints.
  assert.match(out, /^shop\/istio\.api +spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api /m, `store list${context}`);
  assert.match(out, /^shop\/istio\.default /m);
  assert.match(out, /certs\/shop\/api: OK spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api, valid until /);
  assert.match(out, /"uri": "spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api"/, `Envoy's /certs${context}`);
  const codes = [...out.matchAll(/^(\d{3})$/gm)].map((m) => m[1]);
  // The app posted; the caller posted; web -> api and plaintext under PERMISSIVE, then under STRICT; the pod through the admission proxy.
  assert.deepEqual(codes, ['201', '201', '200', '200', '200', '000', '201'], `HTTP codes${context}`);
  assert.match(out, /peerauthentication istio-system\/default created/);
  const status = out.split('\n').filter((l) => l.startsWith('sidecar~'));
  assert.equal(status.length, 2, `proxy-status lists both sidecars${context}`);
  // CDS and LDS synced for both; api has no upstream, so it asks for no EDS; SDS comes from the agent, not over ADS.
  for (const line of status) assert.match(line, /agent-1 +\S+ +SYNCED +SYNCED +(SYNCED|NOT SENT) +SYNCED +- *$/, line);
  assert.match(out, /"name": *"istio-proxy"/, 'the app posted through the admission proxy is a pod with its sidecar');
  assert.match(out, /^http:\/\/127\.0\.0\.1:15014: citadel \S+ on \S+: healthy$/m, `citadel status${context}`);
  assert.match(out, /^  secrets: +\d+ for \d+ identities; soonest expiry 20/m);
  assert.match(out, /^  proxies: +2 connected$/m);
});
