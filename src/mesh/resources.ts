/**
 * What the generators produce: xDS resources as proto3 JSON (snake_case field names, "1s"
 * durations, "@type" in Any), the way Envoy's YAML takes them. The xDS server encodes them with
 * Envoy's protos; the generators never see a socket.
 */
import type { JsonObject } from '../common/json';
import type { PolicyDocument } from './policy';
import type { MeshSnapshot } from './model';

export interface MeshInputs {
  snapshot: MeshSnapshot;
  /** One array per policy version: generators memoize on its identity, so replace it on change, never edit it. */
  policies: readonly PolicyDocument[];
  trustDomain: string;
  /** Default 'istio-system'. */
  rootNamespace: string;
}

export const TYPE_URL = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  /** SDS over ADS: files-mode sidecars get their file-based secrets (paths, not key material) from the xDS server. */
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;
export type ResourceTypeUrl = (typeof TYPE_URL)[keyof typeof TYPE_URL];

/**
 * One named resource. Shared between proxies and between generations (memoized): treat `json`
 * as immutable. The same object means the same bytes, so a server may cache encodings by identity.
 */
export interface XdsResource {
  readonly name: string;
  readonly typeUrl: ResourceTypeUrl;
  readonly json: JsonObject;
}

export interface GeneratedResources {
  readonly clusters: readonly XdsResource[];
  readonly endpoints: readonly XdsResource[];
  readonly listeners: readonly XdsResource[];
  readonly routes: readonly XdsResource[];
  /** Files mode: the Secrets its TLS contexts name (requested by name, like EDS); empty otherwise. */
  readonly secrets: readonly XdsResource[];
  /** What was left out and why (an upstream naming no service, a rule a proxyless client cannot follow), one line each. */
  readonly warnings: readonly string[];
}

export function xdsResource(typeUrl: ResourceTypeUrl, name: string, json: JsonObject): XdsResource {
  return { name, typeUrl, json };
}

export type ResourceKind = 'clusters' | 'endpoints' | 'listeners' | 'routes' | 'secrets';

/** Collects one proxy's resources: one per name (the first wins), listed by name so the output does not depend on input order. */
export class ResourceSet {
  private readonly byType: Record<ResourceKind, Map<string, XdsResource>> = { clusters: new Map(), endpoints: new Map(), listeners: new Map(), routes: new Map(), secrets: new Map() };
  private readonly warnings = new Set<string>();

  add(kind: ResourceKind, r: XdsResource): void {
    const m = this.byType[kind];
    if (!m.has(r.name)) m.set(r.name, r);
  }

  warn(message: string): void {
    this.warnings.add(message);
  }

  result(): GeneratedResources {
    const sorted = (m: Map<string, XdsResource>) => [...m.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return {
      clusters: sorted(this.byType.clusters),
      endpoints: sorted(this.byType.endpoints),
      listeners: sorted(this.byType.listeners),
      routes: sorted(this.byType.routes),
      secrets: sorted(this.byType.secrets),
      warnings: [...this.warnings],
    };
  }
}
