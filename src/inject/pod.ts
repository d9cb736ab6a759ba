import { MarathonParseError } from '../marathon/model';
import { LABEL } from '../mesh/bootstrap/contract';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';
import { JsonReader } from './json-reader';

/** Marathon's rule for container, volume and endpoint names. */
export const MARATHON_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isMarathonName(name: string): boolean {
  return name.length <= 63 && MARATHON_NAME.test(name);
}

/** The parts of a Marathon pod definition injection looks at; the definition itself stays JSON. */
export interface PodView {
  /** as written (may be relative inside a group) */
  id: string;
  labels: Record<string, string>;
  /** host networking, written or by default (a pod without networks is on the host) */
  hostNetwork: boolean;
  containerNames: string[];
  /** container ports of all containers' endpoints */
  containerPorts: number[];
  volumeNames: string[];
}

/** Reads and checks what injection needs of a pod; errors name the JSON path. */
export function readPod(json: JsonObject, path: string): PodView {
  const r = new JsonReader(json, path);
  const id = r.str('id');
  const labels = r.stringMap('labels');
  const containers = r.objects('containers');
  if (containers.length === 0) r.fail('containers', 'a pod needs at least one container');
  const containerPorts: number[] = [];
  const containerNames = containers.map((c) => {
    for (const e of c.objects('endpoints')) {
      e.str('name');
      const port = e.optInt('containerPort');
      if (port !== undefined && port > 0) containerPorts.push(port);
    }
    return c.str('name');
  });
  const modes = r.objects('networks').map((n) => n.optStr('mode') ?? 'container');
  const volumeNames = r.objects('volumes').map((v) => v.str('name'));
  return { id, labels, hostNetwork: modes.length === 0 || modes.includes('host'), containerNames, containerPorts, volumeNames };
}

/** sidecar.istio.io/status: what injection added (Istio's keys) and the sha256 of the template it used. */
export interface SidecarStatus {
  version: string;
  containers: string[];
  volumes: string[];
}

export function parseStatus(text: string, path: string): SidecarStatus {
  const fail = (what: string): never => {
    throw new MarathonParseError(`${path}/labels/${LABEL.status}`, `${what}; remove the label (and what it lists) by hand or restore it`);
  };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return fail('is not JSON');
  }
  if (!isJsonObject(v)) return fail('is not a JSON object');
  const names = (key: string): string[] => {
    const list = v[key] ?? [];
    if (!Array.isArray(list) || !list.every((x): x is string => typeof x === 'string')) return fail(`"${key}" is not a list of names`);
    return list;
  };
  if (typeof v.version !== 'string') return fail('has no "version"');
  return { version: v.version, containers: names('containers'), volumes: names('volumes') };
}

export function formatStatus(s: SidecarStatus): string {
  return JSON.stringify({ version: s.version, containers: s.containers, volumes: s.volumes });
}

const listOf = (v: JsonValue | undefined): JsonObject[] => (Array.isArray(v) ? v.filter(isJsonObject) : []);
const nameOf = (o: JsonObject) => (typeof o.name === 'string' ? o.name : undefined);

/** The pod without what `status` lists (containers, volumes, the status label): Istio's uninject. */
export function withoutSidecar(pod: JsonObject, status: SidecarStatus): JsonObject {
  const labels = { ...(isJsonObject(pod.labels) ? pod.labels : {}) };
  delete labels[LABEL.status];
  const out: JsonObject = { ...pod, labels };
  out.containers = listOf(pod.containers).filter((c) => !status.containers.includes(nameOf(c) ?? ''));
  if (Array.isArray(pod.volumes)) out.volumes = listOf(pod.volumes).filter((v) => !status.volumes.includes(nameOf(v) ?? ''));
  return out;
}

/** The pod with the sidecar's containers and volumes appended and the status label set. */
export function withSidecar(pod: JsonObject, added: { containers: JsonObject[]; volumes: JsonObject[] }, status: SidecarStatus): JsonObject {
  const labels = { ...(isJsonObject(pod.labels) ? pod.labels : {}), [LABEL.status]: formatStatus(status) };
  const out: JsonObject = { ...pod, labels, containers: [...listOf(pod.containers), ...added.containers] };
  if (added.volumes.length > 0 || Array.isArray(pod.volumes)) out.volumes = [...listOf(pod.volumes), ...added.volumes];
  return out;
}
