/** Marathon's own system-test definitions (shared/marathon), and the same moved onto a container network. */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { JsonObject } from '../../src/common/json';
import { sharedMarathonDir } from '../helpers/marathon-sim';

type Obj = Record<string, any>;

export interface Fixture {
  file: string;
  kind: 'app' | 'pod';
  json: JsonObject;
}

export function systemFixtures(): Fixture[] {
  const out: Fixture[] = [];
  for (const [dir, kind] of [['system-apps', 'app'], ['system-pods', 'pod']] as const) {
    for (const f of readdirSync(path.join(sharedMarathonDir, dir)).filter((n) => n.endsWith('.json')).sort()) {
      out.push({ file: `${dir}/${f}`, kind, json: JSON.parse(readFileSync(path.join(sharedMarathonDir, dir, f), 'utf8')) });
    }
  }
  return out;
}

/** Whether Marathon runs this definition on the host network (the default for apps and pods without networks). */
export function onHostNetwork(f: Fixture): boolean {
  const d = f.json as Obj;
  if (Array.isArray(d.networks) && d.networks.length > 0) return d.networks.some((n: Obj) => n.mode === 'host');
  if (f.kind === 'pod') return true;
  return !d.ipAddress && !(d.container?.docker?.network && d.container.docker.network !== 'HOST');
}

/** The definition a user moving it onto the container network `dcos` would write: port definitions become port mappings. */
export function onContainerNetwork(f: Fixture): JsonObject {
  const d = structuredClone(f.json) as Obj;
  d.networks = [{ mode: 'container', name: 'dcos' }];
  if (f.kind === 'pod') {
    d.containers.forEach((c: Obj) => (c.endpoints ?? []).forEach((e: Obj, i: number) => (e.containerPort ??= 8080 + i)));
    return d;
  }
  const defs: Obj[] = d.portDefinitions ?? (d.ports ?? []).map((port: number) => ({ port }));
  delete d.portDefinitions;
  delete d.ports;
  delete d.requirePorts;
  delete d.ipAddress;
  d.container ??= { type: 'MESOS' };
  if (d.container.docker) delete d.container.docker.network;
  if (defs.length > 0 && !d.container.portMappings) {
    d.container.portMappings = defs.map((p, i) => ({ containerPort: p.port || 8080 + i, ...(p.name ? { name: p.name } : {}), protocol: p.protocol ?? 'tcp' }));
  }
  return d;
}
