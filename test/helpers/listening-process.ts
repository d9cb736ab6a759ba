/** Runs a `citadel` command as a real child process until it prints the line saying where it listens. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

/** The repository root (this file runs from dist/test/helpers). */
export const repoRoot = path.resolve(__dirname, '..', '..', '..');

export interface ListeningProcess {
  /** What the first group of `listening` matched, e.g. http://127.0.0.1:40123 */
  url: string;
  child: ChildProcess;
  /** everything the process wrote to stderr so far */
  stderr(): string;
  /** SIGTERM, then waits for the exit; resolves with the exit code */
  stop(): Promise<number | null>;
}

/** `node dist/src/cli/main.js ...argv`, resolved once its stdout matches `listening`; killed if it does not within `timeoutMs`. */
export function startListeningProcess(argv: string[], listening: RegExp, timeoutMs = 10_000): Promise<ListeningProcess> {
  const what = argv[0];
  const main = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [main, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    const early = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}; stderr: ${err}`));
    };
    child.once('exit', early);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = listening.exec(out);
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
