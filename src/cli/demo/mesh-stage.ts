/**
 * What the demo's mesh acts share: the narrator, Marathon, the store that policy goes into (as
 * `citadel policy apply` does), the demo's hosts with their node agents, and the small pieces an
 * act is made of (a free port, an app that tells who called, a plaintext probe).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { Command } from 'commander';
import { parsePolicyText } from '../../mesh/policy';
import { applyPolicies, deletePolicies, describeRef, refOf, type PolicyRef } from '../../store/policy-apply';
import type { Store } from '../../store/store';
import type { RegisterCommand } from '../commands/index';
import type { DemoHosts } from './demo-hosts';
import { waitUntil } from './wait';

export interface Narrator {
  /** a new step: `▶ text` */
  step(text: string): void;
  /** a line of what happened */
  say(text: string): void;
}

export interface MeshStage extends Narrator {
  dir: string;
  marathonUrl: string;
  store: Store;
  hosts: DemoHosts;
  trustDomain: string;
}

/** Where a task of a Marathon app runs. */
export interface Placement {
  taskId: string;
  host: string;
  ip: string;
}

/** Milliseconds since `t0`, for the narrator. */
export const since = (t0: number) => `${Date.now() - t0} ms`;

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Whether this machine can listen on `ip` (the simulator's container IPs are 127.0.1.x: Linux has all of 127/8 on loopback). */
export function canListenOn(ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, ip, () => s.close(() => resolve(true)));
    s.on('error', () => resolve(false));
  });
}

/** POST /v2/apps, then the app's first task once it runs with a container IP. */
export async function deployApp(stage: MeshStage, app: Record<string, unknown>): Promise<Placement> {
  const res = await fetch(`${stage.marathonUrl}/v2/apps`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(app) });
  if (res.status !== 201) throw new Error(`Marathon answered ${res.status} to POST /v2/apps ${String(app.id)}: ${await res.text()}`);
  return waitUntil(`a task of ${String(app.id)} with a container IP`, async () => {
    const body = (await (await fetch(`${stage.marathonUrl}/v2/apps${String(app.id)}?embed=app.tasks`)).json()) as { app: { tasks?: Array<{ id: string; host: string; state?: string; ipAddresses?: Array<{ ipAddress: string }> }> } };
    const task = body.app.tasks?.find((t) => t.state === 'TASK_RUNNING' && t.ipAddresses?.length);
    return task && { taskId: task.id, host: task.host, ip: task.ipAddresses![0].ipAddress };
  }, 5000);
}

/** Runs one citadel command (registered by `register`) in this process with `-o <file>` added, and gives what it wrote. */
export async function citadelOutput(register: RegisterCommand, args: string[], file: string): Promise<string> {
  const program = new Command('citadel').exitOverride();
  register(program);
  await program.parseAsync([...args, '-o', file], { from: 'user' });
  return readFileSync(file, 'utf8');
}

/** Writes `yaml` to `<dir>/<file>` and applies it as `citadel policy apply -f <file>` does, saying what changed. */
export async function applyPolicy(stage: MeshStage, file: string, yaml: string): Promise<void> {
  writeFileSync(path.join(stage.dir, file), yaml);
  const { documents } = parsePolicyText(yaml, file);
  const result = await applyPolicies(stage.store, documents);
  stage.say(`  $ citadel policy apply -f ${file}: ${result.applied.map((a) => `${describeRef(refOf(a.document))} ${a.outcome}`).join(', ')}`);
}

export async function deletePolicy(stage: MeshStage, ref: PolicyRef): Promise<void> {
  const result = await deletePolicies(stage.store, [ref]);
  stage.say(`  $ citadel policy delete ${ref.kind.toLowerCase()} ${ref.name} -n ${ref.namespace}: ${result.deleted.map((r) => `${describeRef(r)} deleted`).join(', ')}`);
}

export const meshPolicy = (mode: 'STRICT' | 'PERMISSIVE') =>
  `apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: ${mode}}}\n`;

export const istioMutual = (name: string, namespace: string, host: string) =>
  `apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: ${name}, namespace: ${namespace}}\nspec:\n  host: ${host}\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n`;

/** An app on 127.0.0.1 (explicit capture) that answers with the caller's identity as its sidecar told it. */
export class WhoAmIApp {
  requests = 0;
  private constructor(private readonly server: http.Server) {}

  static async listen(port: number): Promise<WhoAmIApp> {
    let app: WhoAmIApp | undefined;
    const server = http.createServer((req, res) => {
      app!.requests++;
      const xfcc = req.headers['x-forwarded-client-cert'];
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ caller: xfcc === undefined ? null : /URI=([^;,]+)/.exec(String(xfcc))?.[1] ?? null, xfcc: xfcc ?? null }));
    });
    app = new WhoAmIApp(server);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    return app;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

export type HttpAnswer = { status: number; caller: string | null } | { error: string };

/** GET / on a new connection (a pooled one could outlive a policy change). */
export function httpGet(host: string, port: number): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => {
        let caller: string | null = null;
        try {
          caller = (JSON.parse(body) as { caller: string | null }).caller;
        } catch {
          // not the app's answer (Envoy's 503 page): no caller
        }
        resolve({ status: res.statusCode!, caller });
      });
      res.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer in 3 s'), { code: 'TIMEOUT' })));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
  });
}

/** How the narrator puts an answer: `200, the app saw spiffe://...` or `refused (ECONNRESET)`. */
export function describeAnswer(a: HttpAnswer): string {
  if ('error' in a) return `refused (${a.error === 'ECONNRESET' ? 'connection reset' : a.error})`;
  return `${a.status}${a.caller ? `, the app saw x-forwarded-client-cert URI=${a.caller}` : ', the app saw no client certificate'}`;
}
