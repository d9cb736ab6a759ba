/** Starts `citadel agent` as a real child process and reads its JSON log lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { collectLogLines, LogLine } from './log-lines';

const main = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

export interface CitadelAgentProcess {
  child: ChildProcess;
  logs(): LogLine[];
  raw(): string;
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM (or the given signal) and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `citadel agent --monitoring-port 0 --log-format json ...args` (it starts logging at once; wait on its lines). */
export function startCitadelAgent(args: string[], env: NodeJS.ProcessEnv = {}): CitadelAgentProcess {
  const child = spawn(process.execPath, [main, 'agent', '--monitoring-port', '0', '--log-format', 'json', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const { lines, raw, waitForLog } = collectLogLines(child);
  return {
    child,
    logs: lines,
    raw,
    waitForLog,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
