/**
 * Marathon apps and pods as the identities they run under (ARCHITECTURE.md, "Identity model"),
 * with what the mesh needs of them: labels, ports, and where each instance is reached and
 * whether Marathon's health checks pass. Kept lean: the view holds one per app and pod.
 */
import { checkNamespace, checkServiceAccount } from '../pki/identity';
import { attachmentOf, podEndpoints, podInstanceAddress, servingPort, taskAddress, type InstanceAddress } from './addressing';
import { isTerminalState, type MarathonApp, type MarathonPod, type MarathonPort, type MarathonTask } from './model';

/** Why Marathon does not count an instance healthy: a health check fails, or none has run yet. */
export type Unhealthy = 'failing' | 'unchecked';

export interface WorkloadInstance {
  /** task id or pod instance id */
  id: string;
  /** task.host or instance.agentHostname */
  host: string;
  /** a Mesos task state (tasks) or a pod instance status (STABLE, DEGRADED, ...) */
  state: string;
  /** where callers connect: the container's IP on a container network, else the host; absent while unknown */
  address?: string;
  /** per Workload.ports entry, the port callers connect to at `address` (0: none); absent when the workload has no ports */
  ports?: number[];
  /** absent when healthy (or the workload has no health checks) */
  unhealthy?: Unhealthy;
}

/** A port the workload serves on. */
export interface WorkloadPort {
  name?: string;
  /** the same for every instance (container port, fixed host port or service port); 0: none (a dynamic host port of a pod) */
  port: number;
  /** Marathon's: `tcp`, `udp`, `udp,tcp` */
  protocol: string;
}

export interface Workload {
  kind: 'app' | 'pod';
  id: string;
  namespace: string;
  serviceAccount: string;
  /** absent when there are none */
  labels?: Readonly<Record<string, string>>;
  /** absent when there are none */
  ports?: WorkloadPort[];
  instances: WorkloadInstance[];
}

export interface InvalidWorkload {
  kind: 'app' | 'pod';
  id: string;
  reason: string;
}

export const NAMESPACE_LABEL = 'istio.io/namespace';
export const SERVICE_ACCOUNT_LABEL = 'istio.io/service-account';
export const DEFAULT_NAMESPACE = 'default';
export const DEFAULT_SERVICE_ACCOUNT = 'default';

/**
 * Namespace: the first segment of the path id (one segment -> `default`), overridden by the
 * label istio.io/namespace. Service account: the label istio.io/service-account, else `default`.
 * An invalid name is an error, never renamed.
 */
export function workloadIdentityOf(
  kind: 'app' | 'pod',
  id: string,
  labels: Record<string, string> | undefined,
): { namespace: string; serviceAccount: string } | { error: string } {
  const segments = id.split('/').filter((s) => s.length > 0);
  if (segments.length === 0) return { error: `${kind} id "${id}" has no path segment` };
  const nsLabel = labels?.[NAMESPACE_LABEL];
  const saLabel = labels?.[SERVICE_ACCOUNT_LABEL];
  const namespace = nsLabel ?? (segments.length > 1 ? segments[0] : DEFAULT_NAMESPACE);
  const serviceAccount = saLabel ?? DEFAULT_SERVICE_ACCOUNT;
  const nsProblem = checkNamespace(namespace);
  if (nsProblem) {
    const from = nsLabel !== undefined ? `label ${NAMESPACE_LABEL}` : 'first segment of the id';
    return { error: `${nsProblem} (from the ${from}); rename the group or set the label ${NAMESPACE_LABEL}` };
  }
  const saProblem = checkServiceAccount(serviceAccount);
  if (saProblem) return { error: `${saProblem} (from the label ${SERVICE_ACCOUNT_LABEL}); fix the label` };
  return { namespace, serviceAccount };
}

export function isLive(instance: WorkloadInstance): boolean {
  return !isTerminalState(instance.state);
}

/** Serving traffic: a task in TASK_RUNNING, a pod instance STABLE or DEGRADED (running, not all healthy). */
export function isRunning(instance: WorkloadInstance): boolean {
  return instance.state === 'TASK_RUNNING' || instance.state === 'STABLE' || instance.state === 'DEGRADED';
}

/** As marathon-lb and Traefik read it: with health checks, every result must be alive, and no result yet is not healthy. */
function taskHealth(app: MarathonApp, task: MarathonTask): Unhealthy | undefined {
  if (!app.hasHealthChecks) return undefined;
  if (task.healthCheckResults.length === 0) return 'unchecked';
  return task.healthCheckResults.every((r) => r.alive) ? undefined : 'failing';
}

function workloadPorts(ports: readonly MarathonPort[]): WorkloadPort[] | undefined {
  if (ports.length === 0) return undefined;
  return ports.map((p) => (p.name !== undefined ? { name: p.name, port: servingPort(p), protocol: p.protocol } : { port: servingPort(p), protocol: p.protocol }));
}

function instanceOf(id: string, host: string, state: string, reach: InstanceAddress, unhealthy: Unhealthy | undefined, hasPorts: boolean): WorkloadInstance {
  const inst: WorkloadInstance = { id, host, state };
  if (reach.address !== undefined) inst.address = reach.address;
  if (hasPorts) inst.ports = reach.ports;
  if (unhealthy !== undefined) inst.unhealthy = unhealthy;
  return inst;
}

function withPortsAndLabels(w: Workload, ports: WorkloadPort[] | undefined, labels: Record<string, string>): Workload {
  if (ports) w.ports = ports;
  if (Object.keys(labels).length > 0) w.labels = labels;
  return w;
}

export function workloadOfApp(app: MarathonApp): Workload | InvalidWorkload {
  const identity = workloadIdentityOf('app', app.id, app.labels);
  if ('error' in identity) return { kind: 'app', id: app.id, reason: identity.error };
  const attachment = attachmentOf(app.networks);
  const ports = workloadPorts(app.ports);
  const w: Workload = {
    kind: 'app',
    id: app.id,
    ...identity,
    instances: app.tasks.map((t) => instanceOf(t.id, t.host, t.state, taskAddress(app, attachment, t), taskHealth(app, t), ports !== undefined)),
  };
  return withPortsAndLabels(w, ports, app.labels);
}

export function workloadOfPod(pod: MarathonPod): Workload | InvalidWorkload {
  const identity = workloadIdentityOf('pod', pod.id, pod.labels);
  if ('error' in identity) return { kind: 'pod', id: pod.id, reason: identity.error };
  const attachment = attachmentOf(pod.networks);
  const endpoints = podEndpoints(pod);
  const ports = workloadPorts(endpoints);
  const w: Workload = {
    kind: 'pod',
    id: pod.id,
    ...identity,
    // Marathon derives STABLE from all containers running and none failing (or not yet reporting) its health check
    instances: pod.podInstances.map((i) => instanceOf(i.id, i.agentHostname, i.status, podInstanceAddress(pod, attachment, endpoints, i), i.status === 'DEGRADED' ? 'failing' : undefined, ports !== undefined)),
  };
  return withPortsAndLabels(w, ports, pod.labels);
}

export function isInvalid(w: Workload | InvalidWorkload): w is InvalidWorkload {
  return 'reason' in w;
}
