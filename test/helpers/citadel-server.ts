/** Starts `citadel server` as a real child process and reads its JSON log lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { collectLogLines, LogLine } from './log-lines';

const main = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

export type { LogLine };

export interface CitadelServerProcess {
  child: ChildProcess;
  monitoringPort: number;
  /** 0 when started with --no-grpc. */
  grpcPort: number;
  /** 0 when started with --no-xds. */
  xdsPort: number;
  logs(): LogLine[];
  /** Everything it wrote to stderr so far. */
  raw(): string;
  /** Resolves with the first log line (already seen or to come) that matches. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM (or the given signal) and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Runs `citadel server --monitoring-port 0 --grpc-port 0 --log-format json ...args` and resolves
 * once its initial reconcile is done (or, with `waitFor`, once that log line appears).
 */
export function startCitadelServer(args: string[], opts: { timeoutMs?: number; waitFor?: (l: LogLine) => boolean; env?: NodeJS.ProcessEnv } = {}): Promise<CitadelServerProcess> {
  const child = spawn(process.execPath, [main, 'server', '--monitoring-port', '0', '--grpc-port', '0', '--xds-port', '0', '--log-format', 'json', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const { lines, raw, waitForLog } = collectLogLines(child);
  return (async () => {
    const monitoring = await waitForLog((l) => l.msg === 'monitoring listening', opts.timeoutMs ?? 20_000);
    const grpc = args.includes('--no-grpc') ? undefined : await waitForLog((l) => l.msg === 'gRPC CA listening', opts.timeoutMs ?? 20_000);
    const xds = args.includes('--no-xds') ? undefined : await waitForLog((l) => l.msg === 'xDS listening', opts.timeoutMs ?? 20_000);
    await waitForLog(opts.waitFor ?? ((l) => l.msg === 'initial reconcile done'), opts.timeoutMs ?? 20_000);
    return {
      child,
      monitoringPort: Number(monitoring.port),
      grpcPort: grpc ? Number(grpc.port) : 0,
      xdsPort: xds ? Number(xds.port) : 0,
      logs: lines,
      raw,
      waitForLog,
      stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return exited;
      },
    };
  })();
}
