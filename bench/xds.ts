/**
 * The xDS server at the issue's scale: 1,000 services, 10,000 endpoints, 2,000 ADS clients
 * speaking the protocol with ACKs (bench/xds-mesh.ts has the mesh, bench/xds-clients.ts the
 * clients). The server is a process of its own (bench/xds-server-process.ts, built as `citadel
 * server` builds it), so its RSS and CPU are its own; the clients run in a few processes beside
 * it (see --via for how they connect).
 *
 * Measured:
 *   (a) one task added to a service -> every sidecar with that service as an upstream has ACKed
 *       an EDS carrying the new endpoint: p99 and max over those sidecars, from the moment the
 *       Marathon view changed; for leaf services (about 4 callers) and hub services (about 500);
 *   (b) the root namespace's PeerAuthentication switched (PERMISSIVE -> STRICT and back) -> every
 *       sidecar has ACKed an LDS whose inbound listeners follow the new mode: the last ACK;
 *   (c) the server's peak RSS (VmHWM) and CPU seconds, for the run and for each phase.
 *
 *   node dist/bench/xds.js [services=1000] [tasksPerService=10] [proxies=2000] [clientProcesses=4] [changes=5] [policyFlips=3]
 *                          [--via=direct|agent] [--extensions=N]
 *
 * --via=direct (default): every sidecar on its own mTLS connection with its workload certificate,
 * as files-mode sidecars dial the server; --via=agent: through node agents, one connection per
 * Mesos agent (the sds-mode default). --extensions=N: each first request carries N node.extensions
 * (about 120 bytes each; a real Envoy's 500-odd make its first request about 60 KB); default 0.
 *
 * Environment: XDS_NODE_ARGS (node flags for the server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"),
 * XDS_HEAP_SNAPSHOTS=dir (the server writes heap snapshots after connecting and at the end).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { envoyProtoRoot } from '../src/api/envoy-protos';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { nodeIdentity, workloadIdentity } from '../src/pki/identity';
import { FileStore } from '../src/store/file-store';
import { cpuMicros } from './grpc-proc';
import { credentialKey, FIELDS, type ClientCommand, type ClientCredential, type ClientReport, type Via, type Watch } from './xds-clients';
import { clustersOf, HUBS, instanceOf, proxyOf, upstreamsOf, type BenchProxy, type MeshShape } from './xds-mesh';
import type { ServerCommand, ServerReport } from './xds-server-process';
import { percentile } from './stats';

const TARGETS = { endpointP99Ms: 1000, policyMs: 5000, rssMb: 500 };
const ANCHORS = 'anchors: istiod "1 vCPU and 1.5 GB" for 1,000 services and 2,000 sidecars; Istio 1.0.3 pushed endpoint updates to 500 sidecars in under 1 s';
const WATCH_TIMEOUT_MS = 30_000;

const out = (s: string) => process.stdout.write(`${s}\n`);
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
const ms = (x: number) => `${Math.round(x)} ms`;
const mb = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MB`;

/** With XDS_HEAP_SNAPSHOTS=dir, the server writes a heap snapshot there (for reading with Chrome DevTools). */
async function heapSnapshot(server: Child<ServerCommand, ServerReport>, label: string): Promise<void> {
  const dir = process.env.XDS_HEAP_SNAPSHOTS;
  if (!dir) return;
  const written = server.next((r): r is Extract<ServerReport, { op: 'heapSnapshot' }> => r.op === 'heapSnapshot');
  server.send({ op: 'heapSnapshot', file: path.join(dir, `xds-server-${label}.heapsnapshot`) });
  out(`  heap snapshot: ${(await written).file}`);
}

async function pushes(server: Child<ServerCommand, ServerReport>): Promise<{ count: number; seconds: number }> {
  const r = server.next((x): x is Extract<ServerReport, { op: 'pushes' }> => x.op === 'pushes');
  server.send({ op: 'pushes' });
  return r;
}

async function memory(server: Child<ServerCommand, ServerReport>): Promise<string> {
  const m = server.next((r): r is Extract<ServerReport, { op: 'memory' }> => r.op === 'memory');
  server.send({ op: 'memory' });
  const r = await m;
  return `RSS ${mb(r.rss)} (heap ${mb(r.heapUsed)} of ${mb(r.heapTotal)}, external ${mb(r.external)}, array buffers ${mb(r.arrayBuffers)})`;
}

function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Resident now, and the peak so far. */
const rssMb = (pid: number) => `${(statusKb(pid, 'VmRSS') / 1024).toFixed(0)} MB (peak ${(statusKb(pid, 'VmHWM') / 1024).toFixed(0)})`;

/** The client's hand-read field numbers, checked against Envoy's protos. */
function checkFieldNumbers(): void {
  const root = envoyProtoRoot();
  const id = (type: string, field: string) => root.lookupType(type).fields[field]?.id;
  const checks: Array<[number, string, string]> = [
    [FIELDS.cluster.name, 'envoy.config.cluster.v3.Cluster', 'name'],
    [FIELDS.cluster.type, 'envoy.config.cluster.v3.Cluster', 'type'],
    [FIELDS.cluster.edsClusterConfig, 'envoy.config.cluster.v3.Cluster', 'eds_cluster_config'],
    [FIELDS.cluster.edsServiceName, 'envoy.config.cluster.v3.Cluster.EdsClusterConfig', 'service_name'],
    [FIELDS.listener.filterChains, 'envoy.config.listener.v3.Listener', 'filter_chains'],
    [FIELDS.listener.chainFilters, 'envoy.config.listener.v3.FilterChain', 'filters'],
    [FIELDS.listener.filterTypedConfig, 'envoy.config.listener.v3.Filter', 'typed_config'],
    [FIELDS.listener.hcmRds, 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', 'rds'],
    [FIELDS.listener.rdsRouteConfigName, 'envoy.extensions.filters.network.http_connection_manager.v3.Rds', 'route_config_name'],
    [FIELDS.assignment.endpoints, 'envoy.config.endpoint.v3.ClusterLoadAssignment', 'endpoints'],
    [FIELDS.assignment.lbEndpoints, 'envoy.config.endpoint.v3.LocalityLbEndpoints', 'lb_endpoints'],
    [FIELDS.assignment.endpoint, 'envoy.config.endpoint.v3.LbEndpoint', 'endpoint'],
    [FIELDS.assignment.address, 'envoy.config.endpoint.v3.Endpoint', 'address'],
    [FIELDS.assignment.socketAddress, 'envoy.config.core.v3.Address', 'socket_address'],
    [FIELDS.assignment.socketAddressAddress, 'envoy.config.core.v3.SocketAddress', 'address'],
    [FIELDS.assignment.portValue, 'envoy.config.core.v3.SocketAddress', 'port_value'],
    [FIELDS.node.extensions, 'envoy.config.core.v3.Node', 'extensions'],
    [FIELDS.node.userAgentBuildVersion, 'envoy.config.core.v3.Node', 'user_agent_build_version'],
  ];
  for (const [n, type, field] of checks) if (id(type, field) !== n) throw new Error(`bench/xds-clients.ts reads ${type}.${field} as field ${n}; the protos say ${id(type, field)}`);
  if (root.lookupEnum('envoy.config.cluster.v3.Cluster.DiscoveryType').values.EDS !== FIELDS.cluster.EDS) throw new Error('Cluster.DiscoveryType EDS is not 3');
}

/** A forked process and its messages, awaited by predicate. */
class Child<Cmd, Report> {
  private readonly waiters: Array<{ test: (r: Report) => boolean; resolve: (r: Report) => void }> = [];
  readonly proc: ChildProcess;

  constructor(file: string, args: string[], execArgv: string[], readonly onReport: (r: Report) => void = () => undefined) {
    this.proc = fork(path.join(__dirname, file), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (r: Report) => {
      const i = this.waiters.findIndex((w) => w.test(r));
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(r);
      this.onReport(r);
    });
    this.proc.once('exit', (code, signal) => {
      if (!this.stopping) process.stderr.write(`${file} exited (${code ?? signal}) before the benchmark ended\n`);
    });
  }

  private stopping = false;

  get pid(): number {
    return this.proc.pid!;
  }

  send(cmd: Cmd): void {
    this.proc.send(cmd as object);
  }

  next<R extends Report>(test: (r: Report) => r is R): Promise<R>;
  next(test: (r: Report) => boolean): Promise<Report>;
  next(test: (r: Report) => boolean): Promise<Report> {
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }

  stop(): Promise<void> {
    this.stopping = true;
    return new Promise((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) return resolve();
      const kill = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
      this.proc.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      this.proc.disconnect();
    });
  }
}

type ServerChild = Child<ServerCommand, ServerReport>;
type ClientChild = Child<ClientCommand, ClientReport>;

interface WatchResult {
  affected: number;
  complete: boolean;
  /** ms from the change to each affected client's ACK, sorted */
  latencies: number[];
  received: Record<string, number>;
  serverCpuMs: number;
  /** The server's own time for one push (regenerate every proxy, send what changed), mean over the pushes the change caused. */
  pushMs: number;
  load: string;
  changed: Extract<ServerReport, { op: 'changed' }>;
}

let watchIds = 0;
type WatchSpec = Watch extends infer W ? (W extends Watch ? Omit<W, 'id'> : never) : never;

/** Arms a watch in every client process, makes the change, and waits for every affected client's ACK. */
async function measure(server: ServerChild, clients: ClientChild[], watch: WatchSpec, change: ServerCommand): Promise<WatchResult> {
  const id = ++watchIds;
  const w = { ...watch, id } as Watch;
  const armed = clients.map((c) => c.next((r) => r.op === 'armed' && r.id === id));
  const done = clients.map((c) => c.next((r): r is Extract<ClientReport, { op: 'done' }> => r.op === 'done' && r.id === id));
  for (const c of clients) c.send({ op: 'watch', watch: w });
  await Promise.all(armed);
  const pushes0 = await pushes(server);
  const cpu0 = cpuMicros(server.pid);
  const changed = server.next((r): r is Extract<ServerReport, { op: 'changed' }> => r.op === 'changed');
  server.send(change);
  const report = await changed;
  const at = report.at;
  const timeout = setTimeout(() => clients.forEach((c) => c.send({ op: 'collect', id })), WATCH_TIMEOUT_MS);
  const results = await Promise.all(done);
  clearTimeout(timeout);
  // Let the push finish everywhere (unaffected clients, other types) before reading the CPU.
  await new Promise((r) => setTimeout(r, 300));
  const serverCpuMs = (cpuMicros(server.pid) - cpu0) / 1000;
  const pushes1 = await pushes(server);
  const received: Record<string, number> = {};
  for (const r of results) for (const [t, n] of Object.entries(r.received)) received[t] = (received[t] ?? 0) + n;
  return {
    affected: results.reduce((n, r) => n + r.affected, 0),
    complete: results.every((r) => r.complete),
    latencies: results.flatMap((r) => r.acks.map((a) => a - at)).sort((a, b) => a - b),
    received,
    serverCpuMs,
    pushMs: pushes1.count > pushes0.count ? ((pushes1.seconds - pushes0.seconds) * 1000) / (pushes1.count - pushes0.count) : 0,
    load: load(),
    changed: report,
  };
}

/** Sidecars whose service calls service `s` (two ports, so any of its clusters). */
function expectedCallers(s: number, shape: MeshShape): number {
  let n = 0;
  for (let k = 0; k < shape.proxies; k++) if (upstreamsOf(k % shape.services, shape.services).includes(s)) n++;
  return n;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const [services = 1000, tasks = 10, proxies = 2000, processes = 4, changes = 5, flips = 3] = argv.filter((a) => !a.startsWith('--')).map(Number);
  const shape: MeshShape = { services, tasksPerService: tasks, proxies };
  const extensions = Number(flag('extensions') ?? 0);
  const via = (flag('via') ?? 'direct') as Via;
  if (via !== 'direct' && via !== 'agent') throw new Error(`--via=${via}: choose direct (each sidecar its own connection) or agent (through node agents)`);
  checkFieldNumbers();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-xds-'));
  const children: Array<Child<unknown, unknown>> = [];
  try {
    const store = await FileStore.open(path.join(dir, 'store'));
    const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
    const sidecars: BenchProxy[] = Array.from({ length: proxies }, (_, k) => proxyOf(k, shape));
    const credentials: Record<string, ClientCredential> = {};
    for (const p of sidecars) {
      const key = credentialKey(p, via);
      if (credentials[key]) continue;
      const b = ca.issueKeyCertBundle(via === 'agent' ? nodeIdentity(ca.trustDomain, p.host) : workloadIdentity(ca.trustDomain, p.namespace, p.serviceAccount));
      credentials[key] = { keyPem: b.keyPem, certChainPem: b.certChainPem };
    }
    const connections = via === 'agent' ? Object.keys(credentials).length : proxies;
    await store.close();
    const how = via === 'agent' ? `through ${connections} node agents (one mTLS connection each, node certificates)` : `each on its own mTLS connection (${Object.keys(credentials).length} workload identities)`;
    out(`xds: ${services.toLocaleString('en-US')} services, ${(services * tasks).toLocaleString('en-US')} endpoints, ${HUBS} hub services; ${proxies.toLocaleString('en-US')} ADS clients ${how}, in ${processes} client processes; node.extensions per first request: ${extensions}; ${os.cpus().length} cores, load average ${load()}`);
    out(`  ${ANCHORS}`);

    const t0 = performance.now();
    const server: ServerChild = new Child('xds-server-process.js', [path.join(dir, 'store'), String(services), String(tasks), String(proxies)], process.env.XDS_NODE_ARGS?.split(' ').filter(Boolean) ?? []);
    children.push(server as Child<unknown, unknown>);
    const ready = await server.next((r): r is Extract<ServerReport, { op: 'ready' }> => r.op === 'ready');
    out(`server listening after ${ms(performance.now() - t0)} (mesh built from the Marathon view), ${await memory(server)}`);

    let synced = 0;
    const errors: string[] = [];
    let allSynced!: () => void;
    const syncedAll = new Promise<void>((resolve) => (allSynced = resolve));
    const onReport = (r: ClientReport) => {
      if (r.op === 'synced' && ++synced === proxies) allSynced();
      if (r.op === 'error') errors.push(`client ${r.index}: ${r.message}`);
    };
    const clients: ClientChild[] = Array.from({ length: processes }, () => new Child<ClientCommand, ClientReport>('xds-clients.js', [], [], onReport));
    children.push(...(clients as Array<Child<unknown, unknown>>));
    const cpuBeforeConnect = cpuMicros(server.pid);
    const t1 = performance.now();
    // A node agent's sidecars share its connection, so they go to the same client process.
    const group = (p: BenchProxy) => (via === 'agent' ? Number(p.host.slice(p.host.lastIndexOf('-') + 1)) : p.index) % processes;
    clients.forEach((c, g) =>
      c.send({ op: 'start', port: ready.port, rootPem: ca.rootCertPem, credentials, clients: sidecars.filter((p) => group(p) === g), trustDomain: ca.trustDomain, via, concurrency: 16, extensions }),
    );
    const progress = setInterval(() => out(`  ... ${synced}/${proxies} clients synced${errors.length ? `, ${errors.length} errors (${errors[0]})` : ''}`), 10_000);
    await syncedAll;
    clearInterval(progress);
    const connectMs = performance.now() - t1;
    const connectCpuMs = (cpuMicros(server.pid) - cpuBeforeConnect) / 1000;
    out(`connect: all ${proxies} clients (${connections} connections) connected and SYNCED (CDS, EDS, LDS, RDS ACKed) in ${ms(connectMs)}; server CPU ${(connectCpuMs / 1000).toFixed(2)} s (${ms(connectCpuMs / proxies)} a client), ${await memory(server)}, peak RSS ${(statusKb(server.pid, 'VmHWM') / 1024).toFixed(0)} MB (load average ${load()})`);
    await heapSnapshot(server, 'connected');
    await new Promise((r) => setTimeout(r, 1000));

    const leaves = Array.from({ length: changes }, (_, c) => HUBS + ((c * 211 + 97) % (services - HUBS)));
    const hubs = Array.from({ length: changes }, (_, c) => c % HUBS);
    const report = async (label: string, targets: number[]) => {
      if (targets.length === 0) return;
      const all: number[] = [];
      const perChange: string[] = [];
      let cpuMs = 0;
      let pushMs = 0;
      let incomplete = 0;
      let affectedTotal = 0;
      const loads: string[] = [];
      for (const s of targets) {
        // The address is the server's to choose (the next task of the app); the watch takes it from the change.
        const r = await measureTask(server, clients, s);
        const expected = expectedCallers(s, shape);
        if (r.affected !== expected) errors.push(`service ${s}: ${r.affected} clients subscribed to its clusters, expected ${expected}`);
        all.push(...r.latencies);
        cpuMs += r.serverCpuMs;
        pushMs += r.pushMs;
        affectedTotal += r.affected;
        loads.push(r.load.split(' ')[0]);
        if (!r.complete) incomplete++;
        perChange.push(`${r.affected}: p99 ${ms(percentile(r.latencies, 99))}, max ${ms(r.latencies[r.latencies.length - 1])}`);
        await new Promise((res) => setTimeout(res, 300));
      }
      all.sort((a, b) => a - b);
      const p99 = percentile(all, 99);
      out(`(a) one task added, ${label}: ${targets.length} changes, ${affectedTotal} client ACKs; p50 ${ms(percentile(all, 50))}, p99 ${ms(p99)} (target <= ${TARGETS.endpointP99Ms}) ${met(p99 <= TARGETS.endpointP99Ms && incomplete === 0)}, max ${ms(all[all.length - 1])}; server CPU ${ms(cpuMs / targets.length)} a change (the push to all ${proxies} proxies ${ms(pushMs / targets.length)}), RSS ${rssMb(server.pid)}; load average ${loads.join(', ')}${incomplete ? `; ${incomplete} changes not ACKed by every affected client within ${WATCH_TIMEOUT_MS / 1000} s` : ''}`);
      out(`    per change (affected clients: p99, max): ${perChange.join('; ')}`);
    };
    const measureTask = async (srv: ServerChild, cs: ClientChild[], s: number): Promise<WatchResult> => {
      // The watch is armed before the change: the new task's address comes from the shape, as the server process makes it.
      const next = instanceOf(s, taskCount[s]++);
      const r = await measure(srv, cs, { kind: 'endpoint', clusters: clustersOf(s), address: next.address!, ports: next.ports! }, { op: 'addTask', service: s });
      if (r.changed.address !== next.address) errors.push(`service ${s}: the server added ${r.changed.address}, the clients watched for ${next.address}`);
      return r;
    };
    const taskCount = new Array<number>(services).fill(tasks);

    const cpuPhaseA = cpuMicros(server.pid);
    await report(`leaf services (about ${expectedCallers(leaves[0], shape)} calling sidecars each)`, leaves);
    await report(`hub services (about ${expectedCallers(0, shape)} calling sidecars each)`, hubs);
    const phaseACpu = (cpuMicros(server.pid) - cpuPhaseA) / 1000;

    const cpuPhaseB = cpuMicros(server.pid);
    const modes: Array<'STRICT' | 'PERMISSIVE'> = Array.from({ length: flips }, (_, i) => (i % 2 === 0 ? 'STRICT' : 'PERMISSIVE'));
    const flipLines: string[] = [];
    let worst = 0;
    for (const mode of modes) {
      const r = await measure(server, clients, { kind: 'mode', mode }, { op: 'policy', mode });
      const last = r.latencies[r.latencies.length - 1] ?? Infinity;
      worst = Math.max(worst, r.complete && r.latencies.length === proxies ? last : Infinity);
      flipLines.push(`-> ${mode}: ${r.latencies.length}/${r.affected} clients ACKed, p50 ${ms(percentile(r.latencies, 50))}, last ${ms(last)}; server CPU ${(r.serverCpuMs / 1000).toFixed(2)} s (the push ${ms(r.pushMs)}), RSS ${rssMb(server.pid)}; sent ${Object.entries(r.received).map(([t, n]) => `${n} ${t}`).join(', ')} (load average ${r.load})`);
      await new Promise((res) => setTimeout(res, 500));
    }
    const phaseBCpu = (cpuMicros(server.pid) - cpuPhaseB) / 1000;
    if (modes.length) out(`(b) the root PeerAuthentication switched, every client ACKed its new LDS: worst ${ms(worst)} (target <= ${TARGETS.policyMs}) ${met(worst <= TARGETS.policyMs)}`);
    for (const l of flipLines) out(`    ${l}`);

    out(`server at the end: ${await memory(server)}`);
    await heapSnapshot(server, 'end');
    const hwmMb = statusKb(server.pid, 'VmHWM') / 1024;
    const totalCpu = cpuMicros(server.pid) / 1e6;
    out(`(c) server peak RSS (VmHWM) ${hwmMb.toFixed(0)} MB (target <= ${TARGETS.rssMb}) ${met(hwmMb <= TARGETS.rssMb)}; server CPU for the run ${totalCpu.toFixed(2)} s (start and mesh ${(cpuBeforeConnect / 1e6).toFixed(2)} s, connect ${(connectCpuMs / 1000).toFixed(2)} s, task changes ${(phaseACpu / 1000).toFixed(2)} s, policy flips ${(phaseBCpu / 1000).toFixed(2)} s); clients' CPU ${(clients.reduce((n, c) => n + cpuMicros(c.pid), 0) / 1e6).toFixed(2)} s; load average ${load()}`);
    if (errors.length) {
      out(`errors (${errors.length}): ${errors.slice(0, 5).join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
