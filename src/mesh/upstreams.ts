/** Which service port an upstream (label `citadel.io/upstreams`) names. */
import type { MeshService, MeshSnapshot, ServicePort, Upstream } from './model';

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
