/** Starts `citadel server` as a real child process and reads its JSON log lines. */
import type { ChildProcess } from 'node:child_process';
import { LogLine, spawnCitadel } from './citadel-process';

export type { LogLine };

export interface CitadelServerProcess {
  child: ChildProcess;
  monitoringPort: number;
  /** 0 when started with --no-grpc. */
  grpcPort: number;
  logs(): LogLine[];
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
  const p = spawnCitadel(['server', '--monitoring-port', '0', '--grpc-port', '0', '--log-format', 'json', ...args], { env: opts.env });
  const { waitForLog } = p;
  return (async () => {
    const monitoring = await waitForLog((l) => l.msg === 'monitoring listening', opts.timeoutMs ?? 20_000);
    const grpc = args.includes('--no-grpc') ? undefined : await waitForLog((l) => l.msg === 'gRPC CA listening', opts.timeoutMs ?? 20_000);
    await waitForLog(opts.waitFor ?? ((l) => l.msg === 'initial reconcile done'), opts.timeoutMs ?? 20_000);
    return { child: p.child, monitoringPort: Number(monitoring.port), grpcPort: grpc ? Number(grpc.port) : 0, logs: p.logs, waitForLog, stop: p.stop };
  })();
}
