/**
 * The xDS server of the `xds` benchmark as a process of its own (its RSS and CPU are its own),
 * built as `citadel server` builds it: a MarathonView holding the benchmark mesh, MeshServices
 * following it, a policy set, the XdsServer on a free port with a certificate from the CA in
 * `store-dir`. Started by bench/xds.ts with fork(); talks over the IPC channel:
 *
 *   -> {ready, port, pid}
 *   <- {op: 'addTask', service}           one more task of that app (a Marathon scale-up as the view sees it)
 *   -> {op: 'changed', at, address, ports}   at: when the view changed (ms, performance.timeOrigin + now)
 *   <- {op: 'policy', mode}               the root PeerAuthentication replaced (a `citadel policy apply`)
 *   -> {op: 'changed', at}
 *   <- {op: 'memory'}                     -> {op: 'memory', ...process.memoryUsage()}
 *   <- {op: 'pushes'}                     -> {op: 'pushes', count, seconds}   (citadel_xds_push_duration_seconds)
 *   <- {op: 'heapSnapshot', file}         -> {op: 'heapSnapshot', file}   (XDS_HEAP_SNAPSHOTS=dir in bench/xds.ts)
 *
 *   node dist/bench/xds-server-process.js <store-dir> <services> <tasksPerService> <proxies>
 */
import { writeHeapSnapshot } from 'node:v8';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { createLogger } from '../src/common/log';
import { MarathonView } from '../src/marathon/view';
import { MeshServices } from '../src/mesh/services';
import { parsePolicyText, type PolicyDocument } from '../src/mesh/policy';
import { ServerCertificate } from '../src/server/server-certificate';
import { XdsServer } from '../src/server/xds-server';
import { FileStore } from '../src/store/file-store';
import { instanceOf, meshWorkloads, rootPeerAuthentication, workloadOf, type MeshShape } from './xds-mesh';

export type ServerCommand = { op: 'addTask'; service: number } | { op: 'policy'; mode: 'STRICT' | 'PERMISSIVE' } | { op: 'memory' } | { op: 'heapSnapshot'; file: string } | { op: 'pushes' };
export type ServerReport =
  | { op: 'ready'; port: number; pid: number }
  | { op: 'changed'; at: number; address?: string; ports?: number[] }
  | { op: 'heapSnapshot'; file: string }
  /** The server's push histogram so far: pushes (each to every connected proxy) and their total seconds. */
  | { op: 'pushes'; count: number; seconds: number }
  | { op: 'memory'; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; rss: number };

const now = () => performance.timeOrigin + performance.now();

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const [dir, services = '1000', tasks = '10', proxies = '2000'] = argv;
  const shape: MeshShape = { services: Number(services), tasksPerService: Number(tasks), proxies: Number(proxies) };
  const store = await FileStore.open(dir);
  const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
  const logger = createLogger({ level: process.env.XDS_LOG_LEVEL === 'info' ? 'info' : 'warn' });
  const view = new MarathonView();
  view.replaceAll(meshWorkloads(shape));
  const mesh = new MeshServices(view, { logger });

  const registry = new Registry();
  let policies: readonly PolicyDocument[] = parsePolicyText(rootPeerAuthentication('PERMISSIVE'), 'mesh.yaml').documents;
  const policyListeners = new Set<() => void>();
  const xds = new XdsServer({
    trustDomain: ca.trustDomain,
    serverCertificate: new ServerCertificate(ca, [], logger),
    placements: view,
    mesh: { current: () => mesh.snapshot, onChange: (l) => mesh.onSnapshot(() => l()) },
    policies: {
      current: () => policies,
      onChange: (l) => {
        policyListeners.add(l);
        return () => policyListeners.delete(l);
      },
    },
    port: 0,
    host: '127.0.0.1',
    logger,
    registry,
  });
  const port = await xds.start();

  const taskCount = new Array<number>(shape.services).fill(shape.tasksPerService);
  const send = (r: ServerReport) => process.send!(r);
  process.on('message', async (cmd: ServerCommand) => {
    if (cmd.op === 'addTask') {
      const t = taskCount[cmd.service]++;
      const next = workloadOf(cmd.service, shape, t + 1);
      const added = instanceOf(cmd.service, t);
      const at = now();
      view.put('app', next.id, next);
      send({ op: 'changed', at, address: added.address, ports: added.ports });
    } else if (cmd.op === 'policy') {
      const docs = parsePolicyText(rootPeerAuthentication(cmd.mode), 'mesh.yaml').documents;
      const at = now();
      policies = docs;
      for (const l of policyListeners) l();
      send({ op: 'changed', at });
    } else if (cmd.op === 'memory') {
      send({ op: 'memory', ...process.memoryUsage() });
    } else if (cmd.op === 'pushes') {
      const values = (await registry.getSingleMetric('citadel_xds_push_duration_seconds')!.get()).values as Array<{ metricName?: string; value: number }>;
      const of = (suffix: string) => values.find((v) => v.metricName?.endsWith(suffix))?.value ?? 0;
      send({ op: 'pushes', count: of('_count'), seconds: of('_sum') });
    } else if (cmd.op === 'heapSnapshot') {
      send({ op: 'heapSnapshot', file: writeHeapSnapshot(cmd.file) });
    }
  });
  process.on('disconnect', () => {
    xds.close().finally(() => store.close().finally(() => process.exit(0)));
  });
  send({ op: 'ready', port, pid: process.pid });
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
