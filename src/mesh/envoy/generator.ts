/**
 * (mesh, policy, Envoy sidecar) -> its clusters, endpoints, listeners and routes, and in files
 * mode the two file-based Secrets its TLS contexts name. The generator
 * object is the memo the xDS server keeps: resources shared by proxies (a ClusterLoadAssignment
 * per service port, an outbound Cluster per service port, TLS decision and cert mode, inbound
 * chains, routes) are built once and reused for every proxy and across snapshots while their
 * inputs are the same objects; a proxy whose own service, upstreams and policies did not change
 * gets the very same result object back.
 */
import { isIP } from 'node:net';
import type { JsonObject } from '../../common/json';
import { LoadAssignments } from '../endpoints';
import type { MeshService, ProxyNode, ServicePort } from '../model';
import { inboundClusterName, inboundRouteName, outboundRouteName } from '../names';
import { WeakMemo } from '../memo';
import { PolicyScope } from '../policy-scope';
import { isHttp } from '../protocols';
import { ResourceSet, type GeneratedResources, type MeshInputs, type XdsResource } from '../resources';
import { resolveUpstream, type ResolvedUpstream } from '../upstreams';
import { INBOUND_PASSTHROUGH, PASSTHROUGH, inboundCluster, outboundCluster } from './clusters';
import { inboundChains, inboundListener, outboundFilter, outboundListener, virtualInboundListener, virtualOutboundListener } from './listeners';
import { routeToCluster } from './routes';
import { fileSecrets } from './secrets';
import { certSourceKey, certSourceOf } from './tls';

/** How often the memo was used, for tests and the benchmark. */
export interface GeneratorStats {
  /** generate() calls answered with the proxy's previous result. */
  proxyReuses: number;
  proxyBuilds: number;
  clusterBuilds: number;
  clusterHits: number;
  endpointBuilds: number;
  endpointHits: number;
}

interface ProxyEntry {
  readonly fingerprint: string;
  readonly scope: PolicyScope;
  /** The own service, then per upstream the service it resolved to (or the problem text). */
  readonly dependencies: readonly unknown[];
  readonly result: GeneratedResources;
}

export class EnvoyGenerator {
  private scope: PolicyScope | undefined;
  private readonly clusters = new WeakMemo<XdsResource>();
  private readonly shared = new WeakMemo<XdsResource>();
  private readonly chains = new WeakMemo<JsonObject[]>();
  private readonly proxies = new Map<string, ProxyEntry>();
  private readonly counts = { proxyReuses: 0, proxyBuilds: 0 };

  /** `assignments` may be shared with a GrpcGenerator: the ClusterLoadAssignments are the same for both. */
  constructor(private readonly assignments = new LoadAssignments()) {}

  get stats(): GeneratorStats {
    return {
      ...this.counts,
      clusterBuilds: this.clusters.builds,
      clusterHits: this.clusters.hits,
      endpointBuilds: this.assignments.builds,
      endpointHits: this.assignments.hits,
    };
  }

  /** Drops what is kept for one proxy (its stream ended). */
  forget(proxyId: string): void {
    this.proxies.delete(proxyId);
  }

  generate(inputs: MeshInputs, proxy: ProxyNode): GeneratedResources {
    if (proxy.generator !== 'envoy') throw new Error(`EnvoyGenerator: node ${proxy.id} is a ${proxy.generator} node; use GrpcGenerator`);
    if (this.scope === undefined || !this.scope.fits(inputs)) this.scope = PolicyScope.of(inputs);
    const scope = this.scope;
    const own = inputs.snapshot.services.get(proxy.marathonId);
    const upstreams = own === undefined ? [] : own.upstreams.map((u) => resolveUpstream(inputs.snapshot, u));
    const dependencies: unknown[] = [own, ...upstreams.map((r) => ('problem' in r ? r.problem : r.service))];
    const fingerprint = `${proxy.marathonId}|${certSourceKey(certSourceOf(proxy))}|${proxy.capture}|${proxy.instanceIp}`;
    const previous = this.proxies.get(proxy.id);
    if (previous !== undefined && previous.fingerprint === fingerprint && previous.scope === scope && sameItems(previous.dependencies, dependencies)) {
      this.counts.proxyReuses++;
      return previous.result;
    }
    this.counts.proxyBuilds++;
    const out = new ResourceSet();
    if (own === undefined) {
      out.warn(`${proxy.id}: ${proxy.marathonId} is not in the mesh (snapshot ${inputs.snapshot.version}): no listeners until it is`);
    } else {
      this.inbound(scope, proxy, own, out);
      this.outbound(scope, proxy, own, upstreams, out);
    }
    const certs = certSourceOf(proxy);
    if (certs.mode === 'files') {
      out.add('secrets', this.memo(`file-secret|cert|${certs.dir}`, () => fileSecrets(certs.dir).cert));
      out.add('secrets', this.memo(`file-secret|root|${certs.dir}`, () => fileSecrets(certs.dir).root));
    }
    const result = out.result();
    this.proxies.set(proxy.id, { fingerprint, scope, dependencies, result });
    return result;
  }

  private inbound(scope: PolicyScope, proxy: ProxyNode, own: MeshService, out: ResourceSet): void {
    const redirect = proxy.capture === 'redirect';
    if (!redirect && (isIP(proxy.instanceIp) === 0 || proxy.instanceIp === '127.0.0.1')) {
      // The app listens on 127.0.0.1:<port>; a listener that cannot bind would get the whole LDS update refused.
      out.warn(`${proxy.id}: instance IP "${proxy.instanceIp}" is not the container's own IP address (MESOS_CONTAINER_IP unset?): no inbound listeners`);
      return;
    }
    const certs = certSourceOf(proxy);
    const virtualChains: JsonObject[] = [];
    for (const port of uniquePorts(own.ports)) {
      const mode = scope.peerMode(own, port.port);
      out.add('clusters', this.memo(`inbound-cluster|${port.port}|${port.protocol}`, () => inboundCluster(port)));
      if (isHttp(port.protocol)) out.add('routes', this.memo(`route|${inboundRouteName(port.port)}`, () => routeToCluster(inboundRouteName(port.port), inboundClusterName(port.port))));
      const key = `${mode}|${certSourceKey(certs)}|${port.port}|${port.protocol}|${redirect}`;
      const chains = this.memoChains(key, () => inboundChains(mode, certs, { kind: 'port', port }, redirect ? { destination_port: port.port } : {}));
      if (redirect) virtualChains.push(...chains);
      else out.add('listeners', this.memo(`inbound-listener|${proxy.instanceIp}|${key}`, () => inboundListener(proxy.instanceIp, port.port, chains)));
    }
    if (redirect) {
      // Ports the service does not declare (includeInboundPorts "*") follow the workload-wide mode.
      const mode = scope.peerMode(own, 0);
      virtualChains.push(...this.memoChains(`passthrough|${mode}|${certSourceKey(certs)}`, () => inboundChains(mode, certs, { kind: 'passthrough' })));
      out.add('listeners', virtualInboundListener(virtualChains));
      out.add('clusters', INBOUND_PASSTHROUGH);
    }
  }

  private outbound(scope: PolicyScope, proxy: ProxyNode, own: MeshService, upstreams: ReadonlyArray<ResolvedUpstream | { problem: string }>, out: ResourceSet): void {
    const redirect = proxy.capture === 'redirect';
    const localPorts = new Set<number>();
    const captured = new Set<string>();
    const virtualChains: JsonObject[] = [];
    for (const r of upstreams) {
      if ('problem' in r) {
        out.warn(`${proxy.id}: ${r.problem}; left out`);
        continue;
      }
      const { upstream, service, port } = r;
      if (localPorts.has(upstream.localPort)) {
        out.warn(`${proxy.id}: upstream "${upstream.service}": local port ${upstream.localPort} is taken by an earlier upstream; left out`);
        continue;
      }
      localPorts.add(upstream.localPort);
      const portIndex = service.ports.indexOf(port);
      const cluster = this.cluster(scope, own, service, port, proxy);
      const assignment = this.assignments.of(service, portIndex);
      assignment.warnings.forEach((w) => out.warn(w));
      out.add('clusters', cluster);
      out.add('endpoints', assignment.resource);
      const route = outboundRouteName(upstream.localPort);
      if (isHttp(port.protocol)) out.add('routes', this.memo(`route|${route}|${cluster.name}`, () => routeToCluster(route, cluster.name)));
      out.add('listeners', this.memo(`outbound-listener|${upstream.localPort}|${port.protocol}|${cluster.name}`, () => outboundListener(upstream.localPort, port, cluster.name)));
      if (!redirect) continue;
      // Connections the app opens to one of the upstream's endpoints, grouped by endpoint port.
      const byPort = new Map<number, JsonObject[]>();
      for (const h of assignment.hosts) {
        const key = `${h.address} ${h.port}`;
        if (captured.has(key)) continue;
        captured.add(key);
        const ranges = byPort.get(h.port) ?? [];
        ranges.push({ address_prefix: h.address, prefix_len: h.address.includes(':') ? 128 : 32 });
        byPort.set(h.port, ranges);
      }
      for (const [destinationPort, prefixRanges] of byPort) {
        virtualChains.push({
          name: `${cluster.name}|${destinationPort}`,
          filter_chain_match: { destination_port: destinationPort, prefix_ranges: prefixRanges },
          filters: [outboundFilter(upstream.localPort, port, cluster.name)],
        });
      }
    }
    if (redirect) {
      out.add('listeners', virtualOutboundListener(virtualChains));
      out.add('clusters', PASSTHROUGH);
    }
  }

  private cluster(scope: PolicyScope, client: MeshService, service: MeshService, port: ServicePort, proxy: ProxyNode): XdsResource {
    const { tls, key } = scope.clientTls(client.namespace, service, port);
    // Everything the cluster depends on, so it survives the service's endpoint changes.
    const certs = certSourceOf(proxy);
    return this.clusters.get(`${service.dnsName}|${port.port}|${port.protocol}|${certSourceKey(certs)}|${key}`, () => outboundCluster(service, port, tls, certs));
  }

  private memo(key: string, build: () => XdsResource): XdsResource {
    return this.shared.get(key, build);
  }

  private memoChains(key: string, build: () => JsonObject[]): JsonObject[] {
    return this.chains.get(key, build);
  }
}

/** One proxy's resources without a memo: `new EnvoyGenerator().generate(inputs, proxy)`. */
export function generateEnvoy(inputs: MeshInputs, proxy: ProxyNode): GeneratedResources {
  return new EnvoyGenerator().generate(inputs, proxy);
}

/** The first port of each number (a service listing a port twice gets one listener). */
function uniquePorts(ports: readonly ServicePort[]): ServicePort[] {
  const seen = new Set<number>();
  const unique: ServicePort[] = [];
  for (const p of ports) {
    if (seen.has(p.port)) continue;
    seen.add(p.port);
    unique.push(p);
  }
  return unique;
}

function sameItems(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
