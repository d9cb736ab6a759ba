/** The label `citadel.io/upstreams`: the services a workload calls, each on a local port of its sidecar. */
import type { Upstream } from './model';

export const UPSTREAMS_LABEL = 'citadel.io/upstreams';

/** Ports the sidecar itself holds (sidecar contract: admin 15000 by default, redirect capture 15001/15006). */
const SIDECAR_PORTS = new Set([15000, 15001, 15006]);

const DNS_LABEL = '[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?';
const MARATHON_SEGMENT = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
const MARATHON_ID = new RegExp(`^(/${MARATHON_SEGMENT})+$`);
const DNS_NAME = new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`);
const PORT = /^[1-9][0-9]{0,4}$/;

export class UpstreamsLabelError extends Error {
  constructor(readonly value: string, readonly reason: string) {
    super(`label ${UPSTREAMS_LABEL} "${value}": ${reason}`);
    this.name = 'UpstreamsLabelError';
  }
}

/**
 * Parses `"<service>:<local port>,..."`: a service is a Marathon id (`/prod/db`) or a DNS name
 * (`db-prod.marathon.mesos`), a local port 1-65535 used once. Spaces around an entry are allowed;
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
    if (!(service.startsWith('/') ? MARATHON_ID.test(service) : DNS_NAME.test(service))) {
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
