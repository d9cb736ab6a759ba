/** Mesh snapshots built directly, so each test says exactly which services, ports and endpoints it holds. */
import type { MeshService, MeshSnapshot, ProxyNode, ServiceEndpoint, ServicePort, Upstream } from '../../src/mesh/model';
import type { PolicyDocument } from '../../src/mesh/policy';
import type { MeshInputs } from '../../src/mesh/resources';
import { workloadIdentity } from '../../src/pki/identity';

export const TRUST_DOMAIN = 'cluster.local';

/** `/prod/payments/api` -> `api-payments-prod.marathon.mesos` (Mesos-DNS: the id's segments reversed). */
export function dnsNameOf(marathonId: string): string {
  return `${marathonId.split('/').filter(Boolean).reverse().join('-')}.marathon.mesos`;
}

export interface ServiceSpec {
  marathonId: string;
  namespace?: string;
  serviceAccount?: string;
  labels?: Record<string, string>;
  ports?: ServicePort[];
  endpoints?: ServiceEndpoint[];
  upstreams?: Upstream[];
  hasSidecar?: boolean;
}

export function service(s: ServiceSpec): MeshService {
  return {
    kind: 'app',
    marathonId: s.marathonId,
    dnsName: dnsNameOf(s.marathonId),
    namespace: s.namespace ?? s.marathonId.split('/')[1],
    serviceAccount: s.serviceAccount ?? 'default',
    labels: s.labels ?? {},
    ports: s.ports ?? [{ name: 'http', port: 8080, protocol: 'http' }],
    endpoints: s.endpoints ?? [],
    upstreams: s.upstreams ?? [],
    hasSidecar: s.hasSidecar ?? true,
  };
}

export function endpoint(address: string, ports: number[], healthy = true, instanceId = `task-${address}-${ports.join('-')}`): ServiceEndpoint {
  return { instanceId, host: 'agent-1', address, ports, healthy };
}

/** A snapshot whose lookup finds a service by Marathon id or Mesos-DNS name. */
export function snapshotOf(services: MeshService[], version = 1): MeshSnapshot {
  const byId = new Map(services.map((s) => [s.marathonId, s]));
  const byName = new Map<string, MeshService>();
  for (const s of services) {
    byName.set(s.marathonId, s);
    byName.set(s.dnsName, s);
  }
  return { version, services: byId, lookup: (name) => byName.get(name) };
}

export function inputsOf(snapshot: MeshSnapshot, policies: readonly PolicyDocument[] = []): MeshInputs {
  return { snapshot, policies, trustDomain: TRUST_DOMAIN, rootNamespace: 'istio-system' };
}

export function proxyOf(s: MeshService, o: Partial<Omit<ProxyNode, 'marathonId' | 'identity'>> = {}): ProxyNode {
  const generator = o.generator ?? 'envoy';
  const instanceIp = o.instanceIp ?? '10.0.0.5';
  return {
    id: o.id ?? `${generator === 'envoy' ? 'sidecar' : 'grpc'}~${instanceIp}~${s.marathonId.slice(1).replace(/\//g, '_')}.1`,
    generator,
    marathonId: s.marathonId,
    identity: workloadIdentity(TRUST_DOMAIN, s.namespace, s.serviceAccount),
    certMode: o.certMode ?? 'sds',
    capture: o.capture ?? 'explicit',
    instanceIp,
    ...(o.certsDir !== undefined && { certsDir: o.certsDir }),
  };
}
