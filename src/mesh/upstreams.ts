/**
 * The label `citadel.io/upstreams`: the services a workload calls, each on a local port of its
 * sidecar (`"<service>[:<port>]:<local port>,..."`), parsed here, and resolved against the mesh.
 */
import type { MeshService, MeshSnapshot, ServicePort, Upstream } from './model';

export const UPSTREAMS_LABEL = 'citadel.io/upstreams';

/** Ports the sidecar itself holds (sidecar contract: admin 15000 by default, redirect capture 15001/15006). */
const SIDECAR_PORTS = new Set([15000, 15001, 15006]);

const DNS_LABEL = '[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?';
const MARATHON_SEGMENT = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
const MARATHON_ID = new RegExp(`^(/${MARATHON_SEGMENT})+$`);
const DNS_NAME = new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`);
/** A destination port after the service: a number or a port name. */
const DESTINATION_PORT = /^([1-9][0-9]{0,4}|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/;
const PORT = /^[1-9][0-9]{0,4}$/;

export class UpstreamsLabelError extends Error {
  constructor(readonly value: string, readonly reason: string) {
    super(`label ${UPSTREAMS_LABEL} "${value}": ${reason}`);
    this.name = 'UpstreamsLabelError';
  }
}

/**
 * Parses `"<service>[:<port>]:<local port>,..."`: a service is a Marathon id (`/prod/db`) or a DNS
 * name (`db-prod.marathon.mesos`), optionally with the destination port (number or name; default
 * the service's first), and a local port 1-65535 used once. Spaces around an entry are allowed;
 * anything else wrong throws UpstreamsLabelError, whose message says which entry and why.
 * An empty value means no upstreams.
 */
export function parseUpstreams(value: string): Upstream[] {
  if (value.trim().length === 0) return [];
  const upstreams: Upstream[] = [];
  const localPorts = new Set<number>();
  const fail = (reason: string): never => {
    throw new UpstreamsLabelError(value, reason);
  };
  value.split(',').forEach((raw, i) => {
    const entry = raw.trim();
    const where = `entry ${i + 1}`;
    if (entry.length === 0) fail(`${where} is empty; write "<service>:<local port>,..." with no stray comma`);
    const colon = entry.lastIndexOf(':');
    if (colon < 0) fail(`${where} "${entry}" has no ":<local port>"; write "<service>:<local port>"`);
    const service = entry.slice(0, colon);
    const port = entry.slice(colon + 1);
    const inner = service.lastIndexOf(':');
    const host = inner < 0 ? service : service.slice(0, inner);
    if (inner >= 0 && !DESTINATION_PORT.test(service.slice(inner + 1))) fail(`${where}: "${service.slice(inner + 1)}" is not a destination port (a number or a port name)`);
    if (!(host.startsWith('/') ? MARATHON_ID.test(host) : DNS_NAME.test(host))) {
      fail(`${where}: "${service}" is neither a Marathon id (/group/app) nor a DNS name (app-group.marathon.mesos)`);
    }
    const localPort = Number(port);
    if (!PORT.test(port) || localPort > 65535) fail(`${where}: local port "${port}" is not a port number (1-65535)`);
    if (SIDECAR_PORTS.has(localPort)) fail(`${where}: local port ${localPort} is the sidecar's own (15000 admin, 15001/15006 redirect capture); choose another`);
    if (localPorts.has(localPort)) fail(`${where}: local port ${localPort} is used twice; give each upstream its own`);
    localPorts.add(localPort);
    upstreams.push({ service, localPort });
  });
  return upstreams;
}

export interface ResolvedUpstream {
  readonly upstream: Upstream;
  readonly service: MeshService;
  readonly port: ServicePort;
}

/**
 * `service` is a Marathon id or a Mesos-DNS name: the service's first port (in its definition's
 * order). `service` may also end in `:<port number>` or `:<port name>` to pick another port
 * (`/prod/db:5432`, `db-prod.marathon.mesos:replica`). A name that is a service as written wins
 * over that reading. Undefined `service` in the result: the problem, one line.
 */
export function resolveUpstream(snapshot: MeshSnapshot, upstream: Upstream): ResolvedUpstream | { problem: string } {
  const whole = snapshot.lookup(upstream.service);
  if (whole !== undefined) {
    const first = whole.ports[0];
    if (first === undefined) return { problem: `upstream "${upstream.service}" (local port ${upstream.localPort}): ${whole.marathonId} declares no ports` };
    return { upstream, service: whole, port: first };
  }
  const m = /^(.+):([^:/]+)$/.exec(upstream.service);
  const named = m ? snapshot.lookup(m[1]) : undefined;
  if (m === null || named === undefined) {
    return { problem: `upstream "${upstream.service}" (local port ${upstream.localPort}) names no service in the mesh (a Marathon id or Mesos-DNS name, optionally :<port>)` };
  }
  const wanted = m[2];
  const port = /^\d+$/.test(wanted) ? named.ports.find((p) => p.port === Number(wanted)) : named.ports.find((p) => p.name === wanted);
  if (port === undefined) {
    const have = named.ports.map((p) => (p.name === undefined ? String(p.port) : `${p.port} (${p.name})`)).join(', ') || 'none';
    return { problem: `upstream "${upstream.service}" (local port ${upstream.localPort}): ${named.marathonId} has no port ${wanted}; its ports: ${have}` };
  }
  return { upstream, service: named, port };
}
