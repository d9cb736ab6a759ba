/**
 * Host mounts of the node agent's directories. Under `<sds-dir>` and `<certs-dir>` live every
 * identity's socket and key of the host (`<dir>/<ns>/<sa>`), so a workload may mount only its own
 * identity's directory (or something inside it); anything else there, or a directory holding
 * them (`/var/run`, `/`), would hand it other workloads' certificates.
 */
import * as posix from 'node:path/posix';
import { identityDirectory } from '../mesh/bootstrap/contract';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';

export interface MountProblem {
  path: string;
  error: string;
}

/** The identity a workload runs as (undefined: its labels or id give none, so it owns no directory). */
export interface OwnIdentity {
  namespace: string;
  serviceAccount: string;
}

export class IdentityDirectories {
  /** absolute, normalized, without trailing slashes */
  readonly dirs: readonly string[];

  constructor(dirs: Iterable<string>) {
    this.dirs = [...new Set([...dirs].map(normalize))];
  }

  /** Why a workload running as `own` may not mount `hostPath` from the host, or undefined. Relative paths (the sandbox's) are never the agent's. */
  problemWith(hostPath: string, own: OwnIdentity | undefined): string | undefined {
    if (!hostPath.startsWith('/')) return undefined;
    const p = normalize(hostPath);
    for (const dir of this.dirs) {
      if (within(dir, p)) {
        return `host path ${hostPath} holds ${dir}, the node agent's directory of every identity on the host; mount only your identity's directory${own ? ` ${identityDirectory(dir, own.namespace, own.serviceAccount)}` : ''}`;
      }
      if (!within(p, dir)) continue;
      if (own && within(p, identityDirectory(dir, own.namespace, own.serviceAccount))) return undefined;
      const [ns, sa] = p.slice(dir.length + 1).split('/');
      const whose = sa !== undefined ? `the directory of identity ${ns}/${sa}` : ns !== undefined ? `the directory of every identity of namespace ${ns}` : "the node agent's directory of every identity";
      const mine = own ? `only its own identity's directory ${identityDirectory(dir, own.namespace, own.serviceAccount)} (${own.namespace}/${own.serviceAccount})` : 'nothing there (its id and labels give it no valid identity)';
      return `host path ${hostPath} is ${whose} under ${dir}; this workload may mount ${mine}`;
    }
    return undefined;
  }

  /**
   * A pod's host volumes under the agent's directories, named where they are mounted
   * (`/containers(1)/volumeMounts(0)`), or at `/volumes(i)/host` when no container mounts them.
   */
  podProblems(pod: JsonObject, at: string, own: OwnIdentity | undefined): MountProblem[] {
    const problems: MountProblem[] = [];
    const containers = objects(pod.containers);
    objects(pod.volumes).forEach(([v, i]) => {
      if (typeof v.host !== 'string') return;
      const problem = this.problemWith(v.host, own);
      if (!problem) return;
      const name = typeof v.name === 'string' ? v.name : undefined;
      const mounts: string[] = [];
      for (const [c, ci] of containers) {
        for (const [m, mi] of objects(c.volumeMounts)) if (name !== undefined && m.name === name) mounts.push(`${at}/containers(${ci})/volumeMounts(${mi})`);
      }
      const error = `${name !== undefined ? `volume "${name}": ` : ''}${problem}`;
      if (mounts.length === 0) problems.push({ path: `${at}/volumes(${i})/host`, error });
      for (const path of mounts) problems.push({ path, error });
    });
    return problems;
  }

  /** An app's `container.volumes[].hostPath` and Docker `-v`/`--mount` parameters under the agent's directories. */
  appProblems(app: JsonObject, at: string, own: OwnIdentity | undefined): MountProblem[] {
    const problems: MountProblem[] = [];
    const container = isJsonObject(app.container) ? app.container : undefined;
    if (!container) return problems;
    for (const [v, i] of objects(container.volumes)) {
      if (typeof v.hostPath !== 'string') continue;
      const problem = this.problemWith(v.hostPath, own);
      if (problem) problems.push({ path: `${at}/container/volumes(${i})/hostPath`, error: problem });
    }
    const docker = isJsonObject(container.docker) ? container.docker : undefined;
    for (const [p, i] of objects(docker?.parameters)) {
      const source = typeof p.key === 'string' && typeof p.value === 'string' ? dockerMountSource(p.key, p.value) : undefined;
      const problem = source !== undefined ? this.problemWith(source, own) : undefined;
      if (problem) problems.push({ path: `${at}/container/docker/parameters(${i})/value`, error: `docker ${p.key as string}: ${problem}` });
    }
    return problems;
  }
}

/** The host side of a Docker `volume`/`v` (`/src:/dst[:ro]`) or `mount` (`type=bind,source=/src,...`) parameter. */
function dockerMountSource(key: string, value: string): string | undefined {
  const k = key.replace(/^-+/, '');
  if (k === 'v' || k === 'volume') return value.split(':')[0];
  if (k === 'mount') {
    for (const part of value.split(',')) {
      const [name, v] = part.split('=');
      if ((name === 'source' || name === 'src') && v !== undefined) return v;
    }
  }
  return undefined;
}

function objects(v: JsonValue | undefined): Array<[JsonObject, number]> {
  if (!Array.isArray(v)) return [];
  const out: Array<[JsonObject, number]> = [];
  v.forEach((x, i) => {
    if (isJsonObject(x)) out.push([x, i]);
  });
  return out;
}

function normalize(p: string): string {
  const n = posix.normalize(p).replace(/\/+$/, '');
  return n === '' ? '/' : n;
}

/** `p` is `dir` or inside it. */
function within(p: string, dir: string): boolean {
  return dir === '/' || p === dir || p.startsWith(`${dir}/`);
}
