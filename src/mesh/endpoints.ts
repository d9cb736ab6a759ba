/**
 * ClusterLoadAssignments: a service port's healthy endpoints. One shape serves Envoy and
 * proxyless gRPC (gRPC needs the locality and its weight; Envoy ignores the weight unless a
 * cluster asks for locality-weighted balancing). Memoized on the service object, which the
 * snapshot replaces whenever it changes.
 */
import { isIP } from 'node:net';
import type { JsonObject } from '../common/json';
import type { MeshService } from './model';
import { outboundClusterName } from './names';
import { TYPE_URL, xdsResource, type XdsResource } from './resources';

export interface LoadAssignment {
  readonly resource: XdsResource;
  /** The (address, port) pairs it lists, in its order. */
  readonly hosts: readonly HostAddress[];
  /** Endpoints left out for a reason other than health (an address that is not an IP). */
  readonly warnings: readonly string[];
}

export interface HostAddress {
  readonly address: string;
  readonly port: number;
}

export class LoadAssignments {
  private readonly byService = new WeakMap<MeshService, Map<number, LoadAssignment>>();
  builds = 0;
  hits = 0;

  /** The assignment of `service.ports[portIndex]`. */
  of(service: MeshService, portIndex: number): LoadAssignment {
    let byPort = this.byService.get(service);
    if (byPort === undefined) this.byService.set(service, (byPort = new Map()));
    let found = byPort.get(portIndex);
    if (found === undefined) {
      this.builds++;
      found = loadAssignment(service, portIndex);
      byPort.set(portIndex, found);
    } else {
      this.hits++;
    }
    return found;
  }
}

/** Healthy endpoints at (address, the port at `portIndex`), sorted and without duplicates, in one locality of weight 1. */
export function loadAssignment(service: MeshService, portIndex: number): LoadAssignment {
  const port = service.ports[portIndex];
  if (port === undefined) throw new Error(`${service.marathonId} has no port at index ${portIndex}`);
  const name = outboundClusterName(port.port, service.dnsName);
  const warnings: string[] = [];
  const seen = new Set<string>();
  const hosts: HostAddress[] = [];
  for (const e of service.endpoints) {
    if (!e.healthy) continue;
    const p = e.ports[portIndex];
    if (isIP(e.address) === 0) {
      warnings.push(`${service.marathonId}: endpoint ${e.instanceId} left out of ${name}: address "${e.address}" is not an IP address`);
      continue;
    }
    if (p === undefined || !(p >= 1 && p <= 65535)) {
      warnings.push(`${service.marathonId}: endpoint ${e.instanceId} left out of ${name}: it has no port for ${port.port}`);
      continue;
    }
    const key = `${e.address} ${p}`;
    if (seen.has(key)) continue;
    seen.add(key);
    hosts.push({ address: e.address, port: p });
  }
  hosts.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
  const lbEndpoints: JsonObject[] = hosts.map((h) => ({ endpoint: { address: { socket_address: { address: h.address, port_value: h.port } } } }));
  const json: JsonObject = {
    cluster_name: name,
    endpoints: lbEndpoints.length === 0 ? [] : [{ locality: {}, load_balancing_weight: 1, lb_endpoints: lbEndpoints }],
  };
  return { resource: xdsResource(TYPE_URL.endpoint, name, json), hosts, warnings };
}
