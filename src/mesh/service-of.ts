/** One Marathon app or pod (a valid view entry) as the mesh service it is. */
import { isRunning, type Workload, type WorkloadPort } from '../marathon/workload';
import { mesosDnsName } from './mesos-dns';
import type { MeshService, ServiceEndpoint, ServicePort, Upstream } from './model';
import { portProtocolOf } from './port-protocol';
import { parseUpstreams, UPSTREAMS_LABEL, UpstreamsLabelError } from './upstreams';

/** Istio's injector writes it on every workload it injected. */
export const SIDECAR_STATUS_LABEL = 'sidecar.istio.io/status';

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** What was left out of a service, and why; one line for a person. */
export interface ServiceWarning {
  kind: 'upstreams' | 'port';
  message: string;
}

const isUdpOnly = (p: WorkloadPort) => p.protocol.split(',').every((x) => x.trim().toLowerCase() === 'udp');

/**
 * The service: its Mesos-DNS name, ports with protocols from their names, endpoints of the
 * running instances (healthy unless Marathon's health checks fail or have not run), upstreams
 * from the label. Ports the mesh cannot proxy and a bad upstreams label are left out and named
 * in `warnings`.
 */
export function meshServiceOf(w: Workload): { service: MeshService; warnings: ServiceWarning[] } {
  const warnings: ServiceWarning[] = [];
  const ports: ServicePort[] = [];
  /** index into w.ports of each service port */
  const kept: number[] = [];
  const seen = new Set<number>();
  (w.ports ?? []).forEach((p, i) => {
    const what = `port ${p.name !== undefined ? `"${p.name}"` : `#${i}`}`;
    if (isUdpOnly(p)) warnings.push({ kind: 'port', message: `${what} is UDP only; the mesh proxies TCP, so it is left out` });
    else if (p.port === 0) warnings.push({ kind: 'port', message: `${what} has no fixed number (no containerPort, a dynamic hostPort); give it a containerPort or a fixed hostPort to put it in the mesh` });
    else if (seen.has(p.port)) warnings.push({ kind: 'port', message: `${what} repeats port ${p.port}; only the first is in the mesh` });
    else {
      seen.add(p.port);
      kept.push(i);
      ports.push(p.name !== undefined ? { name: p.name, port: p.port, protocol: portProtocolOf(p.name) } : { port: p.port, protocol: portProtocolOf(undefined) });
    }
  });

  const endpoints: ServiceEndpoint[] = [];
  for (const inst of w.instances) {
    if (!isRunning(inst) || inst.address === undefined) continue;
    const instPorts = kept.map((i) => inst.ports?.[i] ?? 0);
    if (instPorts.includes(0)) continue; // Marathon has not reported this instance's port yet
    endpoints.push({ instanceId: inst.id, host: inst.host, address: inst.address, ports: instPorts, healthy: inst.unhealthy === undefined });
  }
  // Marathon lists tasks in no fixed order; a fixed one keeps generated resources byte-identical
  endpoints.sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0));

  const labels = w.labels ?? NO_LABELS;
  let upstreams: Upstream[] = [];
  const label = labels[UPSTREAMS_LABEL];
  if (label !== undefined) {
    try {
      upstreams = parseUpstreams(label);
    } catch (err) {
      if (!(err instanceof UpstreamsLabelError)) throw err;
      warnings.push({ kind: 'upstreams', message: `${err.message}; the label is ignored` });
    }
  }

  const service: MeshService = {
    kind: w.kind,
    marathonId: w.id,
    dnsName: mesosDnsName(w.id),
    namespace: w.namespace,
    serviceAccount: w.serviceAccount,
    labels,
    ports,
    endpoints,
    upstreams,
    hasSidecar: labels[SIDECAR_STATUS_LABEL] !== undefined,
  };
  return { service, warnings };
}
