/** Runs a `citadel` command (dist/src/cli/main.js) as a real child process and reads its JSON log lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

export const CITADEL_MAIN = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface CitadelProcess {
  child: ChildProcess;
  logs(): LogLine[];
  /** Resolves with the first log line (already seen or to come) that matches. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM (or the given signal) and wait for the exit; resolves with the exit code (null after a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>;
}

/** `node main.js ...args` with `--log-format json` expected among args; stderr is parsed line by line. */
export function spawnCitadel(args: string[], opts: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): CitadelProcess {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CITADEL_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const lines: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let raw = '';
  let buffer = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    raw = (raw + chunk).slice(-20_000);
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text);
      } catch {
        line = { level: 'raw', msg: text };
      }
      lines.push(line);
      for (const w of [...waiters]) if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitForLog = (match: (l: LogLine) => boolean, timeoutMs = 15_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const seen = lines.find(match);
      if (seen) return resolve(seen);
      const t = setTimeout(() => reject(new Error(`log line not seen within ${timeoutMs} ms; stderr:\n${raw.slice(-3000)}`)), timeoutMs);
      waiters.push({ match, resolve: (l) => (clearTimeout(t), resolve(l)) });
      exited.then((code) => {
        clearTimeout(t);
        reject(new Error(`citadel ${args[0]} exited (${code}) before the log line; stderr:\n${raw.slice(-3000)}`));
      });
    });
  return {
    child,
    exited,
    logs: () => lines,
    waitForLog,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
