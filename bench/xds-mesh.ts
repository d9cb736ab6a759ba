/**
 * The mesh of the `xds` benchmark, shared by its driver, its server process and its client
 * processes: 1,000 Marathon apps in 100 namespaces (700 identities), two ports each (`http-api`
 * 8080, `grpc` 9090), 10 tasks each (half on a container network with their own IPs, half on
 * host networking with host ports), every app injected (sidecar status label) and calling three
 * upstreams through `citadel.io/upstreams`: one of 4 hub services (each the upstream of a quarter
 * of the mesh, about 500 sidecars: the anchor's "500 sidecars") and two neighbours (i+1, i+7, so
 * a leaf service has about 4 calling sidecars). Two sidecars per app (its first two tasks): 2,000
 * proxies with distinct node ids.
 */
import type { Workload, WorkloadInstance } from '../src/marathon/workload';
import { mesosDnsName } from '../src/mesh/mesos-dns';
import { outboundClusterName } from '../src/mesh/names';

export const NAMESPACES = 100;
export const ACCOUNTS_PER_NAMESPACE = 7;
export const HUBS = 4;
export const PORTS = [8080, 9090] as const;

export interface MeshShape {
  services: number;
  tasksPerService: number;
  proxies: number;
}

export const DEFAULT_SHAPE: MeshShape = { services: 1000, tasksPerService: 10, proxies: 2000 };

export const serviceId = (i: number) => `/ns-${i % NAMESPACES}/svc-${i}`;
export const namespaceOf = (i: number) => `ns-${i % NAMESPACES}`;
export const accountOf = (i: number) => `sa-${i % ACCOUNTS_PER_NAMESPACE}`;

/** The hub service i calls (a hub calls the next hub). */
export function hubOf(i: number): number {
  return i < HUBS ? (i + 1) % HUBS : i % HUBS;
}

/** Service indexes i calls, in label order. */
export function upstreamsOf(i: number, services: number): number[] {
  return [hubOf(i), (i + 1) % services, (i + 7) % services];
}

const hostOf = (i: number, t: number) => (i * 13 + t) % 500;
const hostAddress = (h: number) => `10.0.${Math.floor(h / 250)}.${(h % 250) + 1}`;

/** Task `t` of service `i`: on a container network (even i) or the agent's address with host ports (odd i). */
export function instanceOf(i: number, t: number): WorkloadInstance {
  const overlay = i % 2 === 0;
  const h = hostOf(i, t);
  return {
    id: `ns-${i % NAMESPACES}_svc-${i}.instance-${String(t).padStart(8, '0')}-0000-4000-8000-000000000000._app.1`,
    host: `agent-${h}`,
    state: 'TASK_RUNNING',
    address: overlay ? `9.${(i >> 8) & 255}.${i & 255}.${t + 1}` : hostAddress(h),
    ports: overlay ? [...PORTS] : [31000 + t * 2, 31001 + t * 2],
  };
}

/** The app `i` with `tasks` tasks (more than the shape's after a scale-up). */
export function workloadOf(i: number, shape: MeshShape, tasks = shape.tasksPerService): Workload {
  const ups = upstreamsOf(i, shape.services);
  const label = ups.map((u, k) => `${serviceId(u)}${k === 2 ? ':grpc' : ''}:${15100 + k}`).join(',');
  return {
    kind: 'app',
    id: serviceId(i),
    namespace: namespaceOf(i),
    serviceAccount: accountOf(i),
    labels: { team: `team-${i % 37}`, 'citadel.io/upstreams': label, 'sidecar.istio.io/status': '{"version":"bench"}' },
    ports: [{ name: 'http-api', port: PORTS[0], protocol: 'tcp' }, { name: 'grpc', port: PORTS[1], protocol: 'tcp' }],
    instances: Array.from({ length: tasks }, (_, t) => instanceOf(i, t)),
  };
}

export function meshWorkloads(shape: MeshShape): Workload[] {
  return Array.from({ length: shape.services }, (_, i) => workloadOf(i, shape));
}

/** The EDS cluster names of service i (one per port). */
export function clustersOf(i: number): string[] {
  return PORTS.map((p) => outboundClusterName(p, mesosDnsName(serviceId(i))));
}

/** One benchmark sidecar: the `k`-th proxy is task floor(k / services) of service k % services. */
export interface BenchProxy {
  index: number;
  service: number;
  marathonId: string;
  namespace: string;
  serviceAccount: string;
  instanceIp: string;
  instanceId: string;
  /** The Mesos agent it runs on (whose node agent forwards its stream, in `--via=agent`). */
  host: string;
}

export function proxyOf(k: number, shape: MeshShape): BenchProxy {
  const service = k % shape.services;
  const inst = instanceOf(service, Math.floor(k / shape.services) % shape.tasksPerService);
  return { index: k, service, marathonId: serviceId(service), namespace: namespaceOf(service), serviceAccount: accountOf(service), instanceIp: inst.address!, instanceId: inst.id, host: inst.host };
}

/** The root-namespace PeerAuthentication, as `citadel policy apply` reads it. */
export function rootPeerAuthentication(mode: 'STRICT' | 'PERMISSIVE', rootNamespace = 'istio-system'): string {
  return `apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: ${rootNamespace}}\nspec: {mtls: {mode: ${mode}}}\n`;
}
