/**
 * (mesh, policy, proxyless gRPC node, the names it asked for) -> those resources. A gRPC node
 * asks for each resource by name (names.ts says which names exist); the server passes the names
 * each stream subscribed to, and answers only what comes back (a missing name does not exist).
 *
 * Server Listener: STRICT -> mTLS with a client certificate required; PERMISSIVE and DISABLE ->
 * plaintext (grpc-js cannot sniff TLS, so PERMISSIVE is plaintext, as in Istio).
 */
import { LoadAssignments } from '../endpoints';
import { WeakMemo } from '../memo';
import type { MeshService, ProxyNode, ServicePort } from '../model';
import { grpcServerListenerName, outboundClusterName, parseOutboundClusterName } from '../names';
import { PolicyScope } from '../policy-scope';
import { ResourceSet, type GeneratedResources, type MeshInputs, type XdsResource } from '../resources';
import { resolveUpstream } from '../upstreams';
import { grpcCluster } from './clusters';
import { grpcClientListener, grpcServerListener } from './listeners';
import { grpcClientListenerNames, lookupTargetHost, parseGrpcListenerName, servicePort } from './names';

/** What a gRPC node subscribed to, per type. */
export interface GrpcResourceNames {
  readonly listeners?: readonly string[];
  readonly clusters?: readonly string[];
  readonly endpoints?: readonly string[];
}

/**
 * The names a node may be expected to ask for, from what the mesh knows of it: its server
 * Listeners at `<instanceIp>:<port>` for each of its service's ports, and for each upstream in
 * `citadel.io/upstreams` the `<dnsName>:<port>` Listener, its Cluster and endpoints. A node asks
 * for what its code dials and binds, which may be more or other: serve what it asks.
 */
export function grpcDefaultNames(inputs: MeshInputs, proxy: ProxyNode): GrpcResourceNames {
  const own = inputs.snapshot.services.get(proxy.marathonId);
  const listeners: string[] = (own?.ports ?? []).map((p) => grpcServerListenerName(proxy.instanceIp, p.port));
  const clusters: string[] = [];
  for (const u of own?.upstreams ?? []) {
    const r = resolveUpstream(inputs.snapshot, u);
    if ('problem' in r) continue;
    listeners.push(grpcClientListenerNames(r.service, r.port.port)[0]);
    clusters.push(outboundClusterName(r.port.port, r.service.dnsName));
  }
  return { listeners, clusters, endpoints: clusters };
}

interface ProxyEntry {
  readonly key: string;
  readonly scope: PolicyScope;
  readonly dependencies: readonly unknown[];
  readonly result: GeneratedResources;
}

export class GrpcGenerator {
  private scope: PolicyScope | undefined;
  private readonly clusters = new WeakMemo<XdsResource | { problem: string }>();
  private readonly clientListeners = new WeakMemo<XdsResource>();
  private readonly proxies = new Map<string, ProxyEntry>();
  private readonly counts = { proxyReuses: 0, proxyBuilds: 0 };

  /** `assignments` may be shared with an EnvoyGenerator: the ClusterLoadAssignments are the same for both. */
  constructor(private readonly assignments = new LoadAssignments()) {}

  get stats(): { proxyReuses: number; proxyBuilds: number } {
    return { ...this.counts };
  }

  forget(proxyId: string): void {
    this.proxies.delete(proxyId);
  }

  generate(inputs: MeshInputs, proxy: ProxyNode, names: GrpcResourceNames = grpcDefaultNames(inputs, proxy)): GeneratedResources {
    if (proxy.generator !== 'grpc') throw new Error(`GrpcGenerator: node ${proxy.id} is an ${proxy.generator} node; use EnvoyGenerator`);
    if (this.scope === undefined || !this.scope.fits(inputs)) this.scope = PolicyScope.of(inputs);
    const scope = this.scope;
    const { snapshot } = inputs;
    const own = snapshot.services.get(proxy.marathonId);
    const listeners = names.listeners ?? [];
    const clusters = names.clusters ?? [];
    const endpoints = names.endpoints ?? [];
    const listenerTargets = listeners.map((n) => {
      const parsed = parseGrpcListenerName(n);
      return { name: n, parsed, service: parsed?.kind === 'client' ? lookupTargetHost(snapshot, parsed.host) : undefined };
    });
    const clusterTargets = (list: readonly string[]) =>
      list.map((n) => {
        const parsed = parseOutboundClusterName(n);
        const service = parsed === undefined ? undefined : snapshot.lookup(parsed.host);
        return { name: n, parsed, service: service?.dnsName === parsed?.host ? service : undefined };
      });
    const clusterList = clusterTargets(clusters);
    const endpointList = clusterTargets(endpoints);
    const dependencies = [own, ...listenerTargets.map((t) => t.service), ...clusterList.map((t) => t.service), ...endpointList.map((t) => t.service)];
    const key = `${proxy.marathonId}|${proxy.identity.namespace}\n${listeners.join('\n')}\n\n${clusters.join('\n')}\n\n${endpoints.join('\n')}`;
    const previous = this.proxies.get(proxy.id);
    if (previous !== undefined && previous.key === key && previous.scope === scope && previous.dependencies.every((d, i) => d === dependencies[i])) {
      this.counts.proxyReuses++;
      return previous.result;
    }
    this.counts.proxyBuilds++;
    const out = new ResourceSet();
    const clientNamespace = own?.namespace ?? proxy.identity.namespace;
    const refuse = (type: string, name: string, why: string) => out.warn(`${proxy.id}: ${type} "${name}" not answered: ${why}`);

    for (const { name, parsed, service } of listenerTargets) {
      if (parsed === undefined) {
        refuse('Listener', name, 'neither <service>:<port> nor the server template with <ip>:<port>');
      } else if (parsed.kind === 'server') {
        if (own === undefined) {
          refuse('Listener', name, `${proxy.marathonId} is not in the mesh (snapshot ${snapshot.version})`);
          continue;
        }
        const mode = scope.peerMode(own, parsed.port);
        out.add('listeners', grpcServerListener(name, parsed.ip, parsed.port, mode === 'STRICT'));
      } else if (service === undefined) {
        refuse('Listener', name, `no service is named "${parsed.host}" (a Mesos-DNS name, or a Marathon id without its leading slash)`);
      } else if (servicePort(service, parsed.port) === undefined) {
        refuse('Listener', name, `${service.marathonId} declares no port ${parsed.port}`);
      } else {
        out.add('listeners', this.clientListener(name, outboundClusterName(parsed.port, service.dnsName)));
      }
    }
    for (const { name, parsed, service } of clusterList) {
      const port = service === undefined || parsed === undefined ? undefined : servicePort(service, parsed.port);
      if (service === undefined || port === undefined) {
        refuse('Cluster', name, 'not an outbound|<port>||<dnsName> of a service port in the mesh');
        continue;
      }
      const cluster = this.cluster(scope, clientNamespace, service, port);
      if ('problem' in cluster) refuse('Cluster', name, cluster.problem);
      else out.add('clusters', cluster);
    }
    for (const { name, parsed, service } of endpointList) {
      const port = service === undefined || parsed === undefined ? undefined : servicePort(service, parsed.port);
      if (service === undefined || port === undefined) {
        refuse('ClusterLoadAssignment', name, 'not an outbound|<port>||<dnsName> of a service port in the mesh');
        continue;
      }
      const assignment = this.assignments.of(service, service.ports.indexOf(port));
      assignment.warnings.forEach((w) => out.warn(w));
      out.add('endpoints', assignment.resource);
    }
    const result = out.result();
    this.proxies.set(proxy.id, { key, scope, dependencies, result });
    return result;
  }

  private cluster(scope: PolicyScope, clientNamespace: string, service: MeshService, port: ServicePort): XdsResource | { problem: string } {
    const { tls, key } = scope.clientTls(clientNamespace, service, port);
    return this.clusters.get(`${service.dnsName}|${port.port}|${key}`, () => grpcCluster(service, port, tls));
  }

  private clientListener(name: string, cluster: string): XdsResource {
    return this.clientListeners.get(`${name}|${cluster}`, () => grpcClientListener(name, cluster));
  }
}

/** One node's resources without a memo. */
export function generateGrpc(inputs: MeshInputs, proxy: ProxyNode, names?: GrpcResourceNames): GeneratedResources {
  return new GrpcGenerator().generate(inputs, proxy, names);
}
