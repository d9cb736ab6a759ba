/** Starts `citadel marathon-sim` as a real child process, for tests that need Marathon. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

/** The repository root (this file runs from dist/test/helpers). */
export const repoRoot = path.resolve(__dirname, '..', '..', '..');
/** shared/marathon beside the repository (CI clones the repo with shared/ next to it). */
export const sharedMarathonDir = path.resolve(repoRoot, '..', 'shared', 'marathon');

export interface MarathonSimProcess {
  /** e.g. http://127.0.0.1:40123 */
  url: string;
  child: ChildProcess;
  /** everything the process wrote to stderr so far */
  stderr(): string;
  /** SIGTERM, then waits for the exit; resolves with the exit code */
  stop(): Promise<number | null>;
}

/**
 * Runs `node dist/src/cli/main.js marathon-sim --port 0 ...args` and resolves with its URL once it
 * prints `marathon-sim listening on <url>`. Example args: ['--seed', file, '--credentials', 'u:p',
 * '--agents', 'a1,a2', '--heartbeat-interval', '200ms', '--standby-of', leaderUrl].
 */
export function startMarathonSimProcess(args: string[] = [], timeoutMs = 10_000): Promise<MarathonSimProcess> {
  const main = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [main, 'marathon-sim', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`marathon-sim did not start within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    const early = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`marathon-sim exited with ${code}; stderr: ${err}`));
    };
    child.once('exit', early);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /marathon-sim listening on (\S+)/.exec(out);
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
