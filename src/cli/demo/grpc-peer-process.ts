/** A grpc-peer.js child process (a proxyless gRPC server or client of the demo), driven over its stdin and stdout. */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { CallRequest, CallResult } from './grpc-peer';

const SCRIPT = path.join(__dirname, 'grpc-peer.js');

export class GrpcPeerProcess {
  private readonly events: Array<Record<string, unknown>> = [];
  private readonly waiters: Array<{ match: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }> = [];
  private stderr = '';
  private nextId = 1;
  private readonly exited: Promise<void>;

  private constructor(readonly name: string, private readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let e: Record<string, unknown>;
      try {
        e = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      this.events.push(e);
      for (const w of [...this.waiters]) {
        if (!w.match(e)) continue;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(e);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (this.stderr = (this.stderr + c).slice(-8000)));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** `node grpc-peer.js <args>` with the bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG. */
  static start(name: string, args: string[], bootstrapJson: string): GrpcPeerProcess {
    const child = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: bootstrapJson } });
    return new GrpcPeerProcess(name, child);
  }

  /** The first event (seen or to come) that `match`es; throws with the process's stderr after `timeoutMs`. */
  event(match: (e: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gRPC ${this.name}: nothing within ${timeoutMs / 1000} s; its stderr ends: ${this.stderr.slice(-1500) || '(empty)'}`)), timeoutMs);
      this.waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  /** One call by the client process: over `xds:///...` (`target`) or plaintext to `host:port`. */
  async call(how: Omit<CallRequest, 'id'>): Promise<CallResult> {
    const id = this.nextId++;
    this.child.stdin!.write(JSON.stringify({ id, ...how }) + '\n');
    return (await this.event((e) => e.event === 'result' && e.id === id, 10_000)) as unknown as CallResult;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(kill);
  }
}
