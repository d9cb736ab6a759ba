/**
 * A small mesh as users run it, for the end-to-end scenarios: the Marathon simulator (one agent
 * host, containers on a container network in 127.0.1.0/24 so local proxies can bind their IPs),
 * `citadel server` (CA, controller, xDS), and `citadel agent` on that host (SDS sockets with the
 * xDS proxy, and/or the files), each a real process; plus what the scenarios do to it: deploy and
 * scale apps, `citadel policy apply`, bootstraps from the CLI, HTTP and TLS probes.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { startCitadelServer, type CitadelServerProcess } from './citadel-server';
import { startMarathonSimProcess, type MarathonSimProcess } from './marathon-sim';
import { cliPath } from './pki';
import { waitFor } from './wait';

export const AGENT_HOST = 'agent-1';

const SIDECAR_STATUS = JSON.stringify({ containers: ['istio-proxy'], volumes: ['workload-socket'] });

/** A mesh-wide PeerAuthentication (root namespace, no selector). */
export function meshWide(mode: 'STRICT' | 'PERMISSIVE' | 'DISABLE'): string {
  return `apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: ${mode}\n`;
}

/**
 * A Marathon app on the container network with one port (`http` unless named otherwise), as the
 * injector leaves it (the sidecar status label) unless `sidecar` is false (proxyless gRPC).
 */
export function meshApp(
  id: string,
  serviceAccount: string,
  port: number,
  o: { labels?: Record<string, string>; portName?: string; sidecar?: boolean; morePorts?: Array<{ port: number; name: string }> } = {},
): Record<string, unknown> {
  const more = (o.morePorts ?? []).map((p) => ({ containerPort: p.port, name: p.name }));
  return {
    id,
    cmd: 'sleep 3600',
    instances: 1,
    networks: [{ mode: 'container', name: 'dcos' }],
    container: { type: 'MESOS', portMappings: [{ containerPort: port, name: o.portName ?? 'http' }, ...more] },
    labels: { 'istio.io/service-account': serviceAccount, ...(o.sidecar !== false && { 'sidecar.istio.io/status': SIDECAR_STATUS }), ...o.labels },
  };
}

export interface MeshClusterOptions {
  /** Agent modes: SDS sockets (with the xds proxy) and/or files. */
  sds?: boolean;
  files?: boolean;
  /** `citadel agent --secret-ttl` (SDS certificates). */
  secretTtl?: string;
  /** `citadel server` flags, e.g. a short --workload-cert-ttl for the files. */
  serverArgs?: string[];
  /** Fixed gRPC and xDS ports, so restartServer() brings the server back where agent and sidecars dial. */
  restartableServer?: boolean;
}

export interface Task {
  id: string;
  ip: string;
}

export interface Identity {
  namespace: string;
  serviceAccount: string;
}

/** One run of `citadel ...`: exit code, output, and how long it took. */
export interface CliRun {
  code: number | null;
  out: string;
  err: string;
  ms: number;
}

export class MeshCluster {
  readonly dir: string;
  readonly store: string;
  readonly rootFile: string;
  readonly sdsDir: string;
  readonly certsDir: string;
  /** A /27 of 127.0.1.0/24 of this run's own, so sessions sharing the machine do not bind the same addresses. */
  readonly cidr: string;
  private sim!: MarathonSimProcess;
  server!: CitadelServerProcess;
  private agent: ChildProcess | undefined;
  private agentLog = '';
  /** The first lines the current agent process wrote (its monitoring port is among them). */
  private agentStartLog = '';
  /** When the current agent process was spawned (Date.now()). */
  agentSpawnedAt = 0;
  private serverArgs: string[] = [];
  private readonly children: ChildProcess[] = [];

  private constructor(private readonly opts: MeshClusterOptions) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'citadel-mesh-'));
    this.store = `file:${this.dir}/data`;
    this.rootFile = path.join(this.dir, 'data', 'ca', 'istio-ca-secret', 'ca-cert.pem');
    this.sdsDir = path.join(this.dir, 'sds');
    this.certsDir = path.join(this.dir, 'certs');
    this.cidr = `127.0.1.${32 * Math.floor(Math.random() * 8)}/27`;
  }

  /** Starts the simulator, the server and the agent; `close()` stops all three, also after a failed start. */
  static async start(opts: MeshClusterOptions): Promise<MeshCluster> {
    const c = new MeshCluster(opts);
    try {
      c.sim = await startMarathonSimProcess(['--agents', AGENT_HOST, '--container-network-cidr', c.cidr]);
      const ports = opts.restartableServer ? ['--grpc-port', String(await freePort()), '--xds-port', String(await freePort())] : [];
      c.serverArgs = ['--marathon', c.sim.url, '--store', c.store, ...(opts.serverArgs ?? []), ...ports];
      c.server = await startCitadelServer(c.serverArgs);
      c.startAgent();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  get marathonUrl(): string {
    return this.sim.url;
  }

  get rootPem(): string {
    return readFileSync(this.rootFile, 'utf8');
  }

  /** The per-identity directories of the agent. */
  socketDir(id: Identity): string {
    return path.join(this.sdsDir, id.namespace, id.serviceAccount);
  }

  filesDir(id: Identity): string {
    return path.join(this.certsDir, id.namespace, id.serviceAccount);
  }

  /** The first start attests with a join token; a restart reuses the node certificate the agent saved. */
  private startAgent(restart = false): void {
    let join: string[] = [];
    if (!restart) {
      const token = this.citadel('token', 'create', '--host', AGENT_HOST, '--store', this.store);
      assert.equal(token.code, 0, token.err);
      join = ['--join-token', token.out.trim()];
    }
    const args = [
      cliPath, 'agent', '--monitoring-port', '0', '--log-format', 'json',
      '--ca-address', `127.0.0.1:${this.server.grpcPort}`, '--ca-root', this.rootFile, ...join, '--host', AGENT_HOST,
      ...(this.opts.sds ? ['--sds-dir', this.sdsDir, '--xds-address', `127.0.0.1:${this.server.xdsPort}`, '--secret-ttl', this.opts.secretTtl ?? '24h'] : []),
      ...(this.opts.files ? ['--certs-dir', this.certsDir] : []),
    ];
    const agent = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.agentStartLog = '';
    agent.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.agentLog = (this.agentLog + c).slice(-200_000);
      if (this.agentStartLog.length < 20_000) this.agentStartLog += c;
    });
    this.agent = agent;
    this.agentSpawnedAt = Date.now();
    this.children.push(agent);
  }

  /** Stops `citadel server` (SIGTERM) and starts it again on the same store and ports (a deploy of the server, say). */
  async restartServer(): Promise<void> {
    assert.ok(this.opts.restartableServer, 'MeshCluster.start({ restartableServer: true }) fixes the ports a restart needs');
    await this.server.stop();
    this.server = await startCitadelServer(this.serverArgs);
  }

  /** Stops the agent (SIGTERM, or SIGKILL for a crash) and starts it again, as systemd's Restart=always would. */
  async restartAgent(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    if (this.agent) await stopChild(this.agent, signal);
    this.startAgent(true);
  }

  /** `http://127.0.0.1:<port>` of the current agent process's monitoring server (/debug/sds), once it listens. */
  async agentMonitoringUrl(): Promise<string> {
    const port = await waitFor('the agent’s monitoring port', () => {
      for (const line of this.agentStartLog.split('\n')) {
        if (!line.includes('"monitoring listening"')) continue;
        const port = (JSON.parse(line) as { port?: number }).port;
        if (port) return port;
      }
      return undefined;
    }, 20_000);
    return `http://127.0.0.1:${port}`;
  }

  /** The tail of the agent's log, for assertion messages. */
  agentLogTail(lines = 30): string {
    return this.agentLog.split('\n').slice(-lines).join('\n');
  }

  /** Waits until the agent serves the identity: its SDS and xds sockets, or its files. */
  async identityReady(id: Identity): Promise<void> {
    const want = [
      ...(this.opts.sds ? [path.join(this.socketDir(id), 'socket'), path.join(this.socketDir(id), 'xds')] : []),
      ...(this.opts.files ? ['cert-chain.pem', 'key.pem', 'root-cert.pem'].map((f) => path.join(this.filesDir(id), f)) : []),
    ];
    try {
      await waitFor(`the agent to serve ${id.namespace}/${id.serviceAccount}`, () => want.every((p) => existsSync(p)), 20_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- agent log ---\n${this.agentLogTail()}`);
    }
  }

  /** `citadel ...args` as a user runs it. */
  citadel(...args: string[]): CliRun {
    const start = Date.now();
    const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, out: r.stdout, err: r.stderr, ms: Date.now() - start };
  }

  /**
   * `citadel policy apply -f` of YAML text against the server's store, without blocking: `done`
   * resolves when the command has exited (the policy is stored), at `exitedAt`.
   */
  applyPolicy(name: string, yaml: string): { startedAt: number; done: Promise<{ exitedAt: number }> } {
    const file = path.join(this.dir, `${name}.yaml`);
    writeFileSync(file, yaml);
    const startedAt = Date.now();
    const child = spawn(process.execPath, [cliPath, 'policy', 'apply', '-f', file, '--store', this.store], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    const done = new Promise<{ exitedAt: number }>((resolve, reject) =>
      child.once('exit', (code) => (code === 0 ? resolve({ exitedAt: Date.now() }) : reject(new Error(`policy apply ${name} exited ${code}: ${err}`)))),
    );
    return { startedAt, done };
  }

  /** `citadel proxy-status --json` against the server. */
  proxyStatus(): Array<{ nodeId: string; marathonId: string; identity: string; via: string; types: Record<string, { status: string; error?: string }> }> {
    const r = this.citadel('proxy-status', '--server', `http://127.0.0.1:${this.server.monitoringPort}`, '--json');
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out);
  }

  /** A file written by a bootstrap command: `citadel <command> ...args -o FILE`. */
  bootstrap(command: 'envoy-bootstrap' | 'grpc-bootstrap', name: string, args: string[]): string {
    const file = path.join(this.dir, name);
    const r = this.citadel(command, ...args, '-o', file);
    assert.equal(r.code, 0, `${command}: ${r.err}`);
    return readFileSync(file, 'utf8');
  }

  async marathon(method: string, urlPath: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${this.sim.url}${urlPath}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${urlPath}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  deploy(app: Record<string, unknown>): Promise<unknown> {
    return this.marathon('POST', '/v2/apps', app);
  }

  /** The app's running tasks: id and container IP, in id order. */
  async tasks(appId: string): Promise<Task[]> {
    const r = (await this.marathon('GET', `/v2/apps${appId}/tasks`)) as { tasks: Array<{ id: string; state: string; ipAddresses?: Array<{ ipAddress: string }> }> };
    return r.tasks
      .filter((t) => t.state === 'TASK_RUNNING' && t.ipAddresses?.[0])
      .map((t) => ({ id: t.id, ip: t.ipAddresses![0].ipAddress }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Waits for `n` running tasks with container IPs. */
  async running(appId: string, n = 1): Promise<Task[]> {
    return waitFor(`${n} running task(s) of ${appId}`, async () => {
      const t = await this.tasks(appId);
      return t.length >= n && t;
    });
  }

  /** A child process of the scenario's own (a gRPC server, say), stopped by close(). */
  adopt(child: ChildProcess): ChildProcess {
    this.children.push(child);
    return child;
  }

  /** Agent pid (the scenarios check nothing restarted). */
  get agentPid(): number | undefined {
    return this.agent?.pid;
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((c) => stopChild(c)));
    await this.server?.stop();
    await this.sim?.stop();
    if (!process.env.CITADEL_KEEP_MESH) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** SIGTERM (or the signal given), SIGKILL after 5 s; resolves when it is gone. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill(signal);
  });
}

/** A port free on 127.0.0.1 and on the given addresses a moment ago. */
export async function freePort(alsoOn: string[] = []): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port: p } = s.address() as AddressInfo;
        s.close(() => resolve(p));
      });
    });
    const free = await Promise.all(alsoOn.map((host) => canListen(host, port)));
    if (free.every(Boolean)) return port;
  }
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** What the app behind a sidecar saw of one request. */
export interface BackendRequest {
  xfcc?: string;
  path?: string;
}

/** An HTTP app on 127.0.0.1:<port> (where the sidecar forwards inbound traffic) that records each request's x-forwarded-client-cert. */
export async function startBackend(port: number, name: string): Promise<{ seen: BackendRequest[]; close(): Promise<void> }> {
  const seen: BackendRequest[] = [];
  const server = http.createServer((req, res) => {
    const xfcc = req.headers['x-forwarded-client-cert'];
    seen.push({ path: req.url, ...(xfcc !== undefined && { xfcc: String(xfcc) }) });
    res.setHeader('content-type', 'text/plain');
    res.end(name);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    seen,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export type Outcome = { status: number; body: string } | { error: string };

/** One GET on a new connection (no pooling: a refused connection must be seen as refused), with a forged XFCC no hop may pass on. */
export function httpGet(host: string, port: number, urlPath = '/', timeoutMs = 5000): Promise<Outcome> {
  return request({ host, port, path: urlPath, agent: false, timeout: timeoutMs, headers: { 'x-forwarded-client-cert': 'By=forged;URI=spiffe://evil/ns/x/sa/y' } });
}

/** One GET over TLS with a client certificate (a mesh workload's, or another root's), on a new connection. */
export function httpsGet(host: string, port: number, cred: { certChainPem: string; keyPem: string; rootCertPem: string }, timeoutMs = 5000): Promise<Outcome> {
  const socket = tls.connect({ host, port, cert: cred.certChainPem, key: cred.keyPem, ca: cred.rootCertPem, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  return request({ createConnection: () => socket, path: '/', timeout: timeoutMs, headers: { host: `${host}:${port}` } });
}

/** One HTTP/1.1 GET: its status and body, or the error code it ended with. */
function request(options: http.RequestOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.request(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => resolve({ error: codeOf(err) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ error: codeOf(err) }));
    req.end();
  });
}

/** The certificate a TLS server presents (serial in lower-case hex, URI SAN), offering a client certificate. */
export function peerCertificate(host: string, port: number, cred: { certChainPem: string; keyPem: string }): Promise<{ serial: string; uri?: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host, port, cert: cred.certChainPem, key: cred.keyPem, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      const raw = socket.getPeerX509Certificate();
      socket.destroy();
      if (!raw) return resolve({ error: 'no certificate' });
      resolve({ serial: raw.serialNumber.toLowerCase(), uri: /URI:([^,\s]+)/.exec(raw.subjectAltName ?? '')?.[1] });
    });
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('error', (err) => resolve({ error: codeOf(err) }));
  });
}

/** The serial (lower-case hex) of the first certificate of a PEM chain. */
export function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber.toLowerCase();
}

export function ok(o: Outcome): o is { status: number; body: string } {
  return 'status' in o;
}

function codeOf(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.message;
}

/** Milliseconds until `check` holds, polling every 10 ms (the measured times the scenarios report). */
export async function timeUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<number> {
  const start = Date.now();
  await waitFor(what, async () => (await check()) || undefined, { timeoutMs, intervalMs: 10 });
  return Date.now() - start;
}
