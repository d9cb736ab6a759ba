/** Starts `citadel admission-proxy` as a real child process, for tests and benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from './marathon-sim';

export interface AdmissionProxyProcess {
  /** e.g. http://127.0.0.1:40123 */
  url: string;
  child: ChildProcess;
  stderr(): string;
  /** SIGTERM, then waits for the exit; resolves with the exit code */
  stop(): Promise<number | null>;
}

/** Runs `node dist/src/cli/main.js admission-proxy --marathon <url> --listen 127.0.0.1:0 ...args` until it prints where it listens. */
export function startAdmissionProxyProcess(marathon: string, args: string[] = [], timeoutMs = 10_000): Promise<AdmissionProxyProcess> {
  const main = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [main, 'admission-proxy', '--marathon', marathon, '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`admission-proxy did not start within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    const early = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`admission-proxy exited with ${code}; stderr: ${err}`));
    };
    child.once('exit', early);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /admission-proxy listening on (\S+) -> /.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.off('exit', early);
      resolve({
        url: m[1],
        child,
        stderr: () => err,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}
