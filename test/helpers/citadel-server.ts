/** Starts `citadel server` as a real child process and reads its JSON log lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

const main = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface CitadelServerProcess {
  child: ChildProcess;
  monitoringPort: number;
  /** 0 when started with --no-grpc. */
  grpcPort: number;
  /** 0 when started with --no-xds. */
  xdsPort: number;
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
  const child = spawn(process.execPath, [main, 'server', '--monitoring-port', '0', '--grpc-port', '0', '--xds-port', '0', '--log-format', 'json', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  const lines: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let raw = '';
  let buffer = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    raw += chunk;
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
      exited.then((code) => reject(new Error(`citadel server exited (${code}) before the log line; stderr:\n${raw.slice(-3000)}`)));
    });
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
      logs: () => lines,
      waitForLog,
      stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return exited;
      },
    };
  })();
}
