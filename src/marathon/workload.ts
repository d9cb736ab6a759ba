/** Marathon apps and pods as the identities they run under (ARCHITECTURE.md, "Identity model"). */
import { checkNamespace, checkServiceAccount } from '../pki/identity';
import { isTerminalState, type MarathonApp, type MarathonPod } from './model';

export interface WorkloadInstance {
  /** task id or pod instance id */
  id: string;
  /** task.host or instance.agentHostname */
  host: string;
  state: string;
}

export interface Workload {
  kind: 'app' | 'pod';
  id: string;
  namespace: string;
  serviceAccount: string;
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

export function workloadOfApp(app: MarathonApp): Workload | InvalidWorkload {
  const identity = workloadIdentityOf('app', app.id, app.labels);
  if ('error' in identity) return { kind: 'app', id: app.id, reason: identity.error };
  return {
    kind: 'app',
    id: app.id,
    ...identity,
    instances: app.tasks.map((t) => ({ id: t.id, host: t.host, state: t.state })),
  };
}

export function workloadOfPod(pod: MarathonPod): Workload | InvalidWorkload {
  const identity = workloadIdentityOf('pod', pod.id, pod.labels);
  if ('error' in identity) return { kind: 'pod', id: pod.id, reason: identity.error };
  return {
    kind: 'pod',
    id: pod.id,
    ...identity,
    instances: pod.podInstances.map((i) => ({ id: i.id, host: i.agentHostname, state: i.status })),
  };
}

export function isInvalid(w: Workload | InvalidWorkload): w is InvalidWorkload {
  return 'reason' in w;
}
