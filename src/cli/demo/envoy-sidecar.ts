/**
 * A real Envoy as a local sidecar process: started from an injected container's shell command
 * (which execs `envoy`, found on PATH as in the image) or from Envoy's own arguments, its admin
 * API read on the port its bootstrap names, and stopped with its process group. Envoys still
 * running when this process exits are killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { waitUntil } from './wait';

export interface EnvoySidecarOptions {
  /** for messages */
  name: string;
  /** the Envoy binary */
  envoy: string;
  /** a shell command that execs `envoy` (an injected sidecar's), or Envoy's arguments */
  command: { shell: string } | { args: string[] };
  /** the container's environment (PATH and HOME are added) */
  env?: Record<string, string>;
  /** the admin port on 127.0.0.1 that the bootstrap names */
  adminPort: number;
  /** where the `envoy` on PATH is linked */
  workDir: string;
  startTimeoutMs?: number;
}

const LOG_KEEP = 64 * 1024;
const running = new Set<ChildProcess>();
let exitHook = false;

export class EnvoySidecar {
  private log = '';
  private exited: Promise<void>;
  private gone = false;

  private constructor(readonly options: EnvoySidecarOptions, private readonly child: ChildProcess) {
    const keep = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString('utf8')).slice(-LOG_KEEP);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => {
      const done = () => {
        this.gone = true;
        running.delete(child);
        resolve();
      };
      child.once('exit', done);
      child.once('error', (err) => {
        keep(Buffer.from(`cannot start: ${err.message}\n`));
        done();
      });
    });
  }

  /** Starts Envoy and resolves once its admin API says LIVE (its secrets and listeners arrived). */
  static async start(o: EnvoySidecarOptions): Promise<EnvoySidecar> {
    const bin = path.join(o.workDir, 'bin');
    mkdirSync(bin, { recursive: true });
    try {
      symlinkSync(path.resolve(o.envoy), path.join(bin, 'envoy'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const env = { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...(process.env.HOME ? { HOME: process.env.HOME } : {}), ...o.env };
    const [file, args] = 'shell' in o.command ? ['sh', ['-c', o.command.shell]] : [path.resolve(o.envoy), o.command.args];
    // its own process group: `sh -c` execs Envoy, and stop() ends whatever the command started
    const child = spawn(file, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    if (!exitHook) {
      exitHook = true;
      const killAll = () => {
        for (const c of running) killGroup(c, 'SIGKILL');
      };
      process.once('exit', killAll);
      // in their own process groups, Envoys would outlive an interrupted demo: end them, then die of the signal as before
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        process.once(signal, () => {
          killAll();
          process.kill(process.pid, signal);
        });
      }
    }
    const sidecar = new EnvoySidecar(o, child);
    try {
      await waitUntil(`Envoy ${o.name} to be LIVE on admin port ${o.adminPort}`, async () => {
        if (sidecar.gone) throw new Error(`it exited; its log ends:\n${sidecar.logTail(15)}`);
        return (await sidecar.admin('/ready').catch(() => '')).trim() === 'LIVE';
      }, o.startTimeoutMs ?? 30_000, 50);
    } catch (err) {
      await sidecar.stop();
      throw new Error(`${(err as Error).message}${sidecar.gone ? '' : `\n${sidecar.logTail(15)}`}`);
    }
    return sidecar;
  }

  get adminUrl(): string {
    return `http://127.0.0.1:${this.options.adminPort}`;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The admin API's body at `urlPath`; throws unless 2xx. */
  async admin(urlPath: string): Promise<string> {
    const res = await fetch(this.adminUrl + urlPath, { signal: AbortSignal.timeout(3000) });
    const body = await res.text();
    if (!res.ok) throw new Error(`Envoy ${this.options.name} admin ${urlPath} answered ${res.status}: ${body.slice(0, 300)}`);
    return body;
  }

  /** Active listeners by name, with their bound address. */
  async listeners(): Promise<Map<string, string>> {
    const dump = JSON.parse(await this.admin('/listeners?format=json')) as { listener_statuses: Array<{ name: string; local_address?: { socket_address?: { address: string; port_value: number } } }> };
    return new Map(dump.listener_statuses.map((l) => [l.name, l.local_address?.socket_address ? `${l.local_address.socket_address.address}:${l.local_address.socket_address.port_value}` : '']));
  }

  /** Resolves with the listener's bound address once Envoy has it active. */
  waitForListener(name: string, timeoutMs = 15_000): Promise<string> {
    return waitUntil(`Envoy ${this.options.name} to have listener ${name}`, async () => (await this.listeners()).get(name), timeoutMs, 50);
  }

  /** One counter or gauge (0 when Envoy has not made it). */
  async stat(name: string): Promise<number> {
    const text = await this.admin(`/stats?filter=${encodeURIComponent(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)}`);
    const m = /: (\d+)\s*$/m.exec(text);
    return m ? Number(m[1]) : 0;
  }

  logTail(lines = 30): string {
    return this.log.split('\n').slice(-lines - 1).join('\n');
  }

  /** SIGTERM to its process group, SIGKILL after 3 s; resolves once it is gone. */
  async stop(): Promise<void> {
    if (this.gone) return;
    killGroup(this.child, 'SIGTERM');
    const kill = setTimeout(() => killGroup(this.child, 'SIGKILL'), 3000);
    await this.exited;
    clearTimeout(kill);
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}
