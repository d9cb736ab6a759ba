/** The Envoy binary tests run: $ENVOY_BIN, else the one installed beside the main checkout. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const ENVOY_BIN = process.env.ENVOY_BIN ?? '/work/main/.venv-envoy/bin/envoy';

export function envoyAvailable(): boolean {
  return existsSync(ENVOY_BIN);
}

/** `envoy --mode validate ...args`: exit code and everything it printed. */
export function envoyValidate(args: string[]): { code: number | null; output: string } {
  const r = spawnSync(ENVOY_BIN, ['--mode', 'validate', '--disable-hot-restart', '--log-level', 'warn', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}
