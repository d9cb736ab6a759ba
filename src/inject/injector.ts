/**
 * Sidecar injection, like `istioctl kube-inject`: a Marathon pod (an app converted into one, a
 * group member by member) gets the Envoy sidecar of the template. Pure: definition and config in,
 * definition and one report per resource out; parse the config once and call inject() per
 * definition (the admission proxy does it per request).
 */
import { MarathonParseError } from '../marathon/model';
import { NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL, workloadIdentityOf } from '../marathon/workload';
import {
  CERTS_MOUNT_PATH, identityDirectory, INBOUND_CAPTURE_PORT, LABEL, OUTBOUND_CAPTURE_PORT, SDS_MOUNT_PATH,
} from '../mesh/bootstrap/contract';
import { envoyBootstrap } from '../mesh/bootstrap/envoy';
import { formatHostPort } from '../mesh/bootstrap/host-port';
import { absoluteMarathonId } from '../mesh/bootstrap/identity';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';
import { parseUpstreams, UpstreamsLabelError } from '../mesh/upstreams';
import { spiffeId, workloadIdentity, type WorkloadIdentity } from '../pki/identity';
import { convertAppToPod, type AppConversion } from './app-to-pod';
import { captureArgs, captureModeOf, captureRulesOf, LabelError } from './capture';
import { settingsFor, type InjectConfig, type SidecarSettings } from './config';
import { JsonReader } from './json-reader';
import { readPod, parseStatus, withoutSidecar, withSidecar, type SidecarStatus } from './pod';
import { proxyCommand } from './proxy-command';
import { renderSidecar } from './template';

export type ResourceKind = 'app' | 'pod';

/** What happened to one app or pod. */
export interface InjectReport {
  /** absolute Marathon id */
  id: string;
  /** where the resource sits in the input (`/apps(0)`, `(2)`; empty for a single definition) */
  path: string;
  /** what it was on input */
  kind: ResourceKind;
  outcome: 'injected' | 'skipped';
  /** why it was skipped */
  reason?: string;
  convertedFromApp: boolean;
  /** an earlier sidecar was replaced (the template or the settings changed) */
  upgraded: boolean;
  /** app fields the pod could not carry (JSON path and why) */
  notCarried: string[];
  /** app fields the pod carries with another meaning */
  changed: string[];
}

export interface InjectResult {
  /** the definition, injected where it applies (same shape as the input: a definition, a group or a list) */
  definition: JsonValue;
  reports: InjectReport[];
  /** per resource, the definition before and after (for diffs) */
  changes: Array<{ report: InjectReport; before: JsonObject; after: JsonObject }>;
}

/**
 * Injects a Marathon pod, app or group definition (JSON), or a list of them. Throws
 * MarathonParseError (JSON path and reason) on a broken definition; nothing is half-done.
 */
export function inject(definition: JsonValue, config: InjectConfig): InjectResult {
  const run = new InjectionRun(config);
  const out = Array.isArray(definition)
    ? definition.map((d, i) => run.definition(d, `(${i})`, '/'))
    : run.definition(definition, '', '/');
  return { definition: out, reports: run.reports, changes: run.changes };
}

type Kind = 'pod' | 'app' | 'group';

/** A pod has containers; a group lists apps, pods or groups (and has no command); anything else is an app. */
export function definitionKind(json: JsonObject): Kind {
  if ('containers' in json) return 'pod';
  const lists = ['apps', 'pods', 'groups'].some((k) => Array.isArray(json[k]));
  if (lists && !('cmd' in json) && !('args' in json) && !('container' in json)) return 'group';
  return 'app';
}

class InjectionRun {
  readonly reports: InjectReport[] = [];
  readonly changes: InjectResult['changes'] = [];
  private readonly sidecarNames: ReadonlySet<string>;

  constructor(private readonly config: InjectConfig) {
    this.sidecarNames = new Set(config.template.containers.map((c) => c.name as string));
  }

  definition(v: JsonValue, path: string, base: string): JsonObject {
    if (!isJsonObject(v)) throw new MarathonParseError(path || '/', 'expected a Marathon app, pod or group definition (a JSON object)');
    if (isJsonObject(v.spec) && !('containers' in v)) {
      throw new MarathonParseError(path || '/', 'is a pod status (GET /v2/pods/<id>::status, /v2/groups), not a definition; inject the definition from GET /v2/pods/<id>');
    }
    const kind = definitionKind(v);
    if (kind === 'group') return this.group(v, path, base);
    if (kind === 'pod') return this.pod(v, path, base);
    return this.app(v, path, base);
  }

  private group(g: JsonObject, path: string, base: string): JsonObject {
    const r = new JsonReader(g, path);
    const id = resolveId(r.optStr('id') ?? base, base, r.at('id'));
    const out: JsonObject = { ...g };
    const apps: JsonObject[] = [];
    const converted: JsonObject[] = [];
    r.objects('apps').forEach((a) => {
      const result = this.app(a.json, a.path, id);
      if ('containers' in result && !('containers' in a.json)) converted.push(result);
      else apps.push(result);
    });
    const pods = r.objects('pods').map((p) => {
      if (isJsonObject(p.json.spec)) p.fail('', 'is a pod status (GET /v2/groups lists pods so), not a definition; inject the definition from GET /v2/pods/<id>');
      return this.pod(p.json, p.path, id);
    });
    if (Array.isArray(g.apps)) out.apps = apps;
    if (Array.isArray(g.pods) || converted.length > 0) out.pods = [...pods, ...converted];
    if (Array.isArray(g.groups)) out.groups = r.objects('groups').map((sub) => this.group(sub.json, sub.path, id));
    return out;
  }

  private app(app: JsonObject, path: string, base: string): JsonObject {
    const r = new JsonReader(app, path);
    const id = resolveId(r.str('id'), base, r.at('id'));
    const labels = r.stringMap('labels');
    const skip = this.optedOut(id, labels, path);
    if (skip) return this.skipped(app, { id, path, kind: 'app', reason: skip });
    const conversion = convertAppToPod(app, path, this.sidecarNames);
    return this.pod(conversion.pod, path, base, { app, conversion });
  }

  private pod(pod: JsonObject, path: string, base: string, from?: { app: JsonObject; conversion: AppConversion }): JsonObject {
    const view = readPod(pod, path);
    const id = resolveId(view.id, base, `${path}/id`);
    const kind: ResourceKind = from ? 'app' : 'pod';
    const original = from?.app ?? pod;
    const labels = view.labels;
    const status = labels[LABEL.status] !== undefined ? parseStatus(labels[LABEL.status], path) : undefined;
    const skip = this.optedOut(id, labels, path);
    if (skip) return this.skipped(original, { id, path, kind, reason: status ? `${skip}; it keeps the sidecar of an earlier injection` : skip });
    if (view.hostNetwork) return this.skipped(original, { id, path, kind, reason: 'host networking (capture would change the host; move it onto a container network)' });
    const identity = this.identity(id, labels, path);

    const settings = settingsFor(this.config, identity.namespace);
    const withoutOld = status ? withoutSidecar(pod, status) : pod;
    const appView = readPod(withoutOld, path);
    for (const name of this.sidecarNames) {
      if (appView.containerNames.includes(name)) throw new MarathonParseError(`${path}/containers`, `a container is already named "${name}", which the sidecar template adds; rename it`);
    }
    for (const v of this.config.template.volumes) {
      if (appView.volumeNames.includes(v.name as string)) throw new MarathonParseError(`${path}/volumes`, `a volume is already named "${String(v.name)}", which the sidecar template adds; rename it`);
    }
    const rendered = renderSidecar(this.config.template, this.templateValues(id, identity, labels, appView.containerPorts, settings, path));
    const newStatus: SidecarStatus = {
      version: this.config.template.sha256,
      containers: rendered.containers.map((c) => c.name as string),
      volumes: rendered.volumes.map((v) => v.name as string),
    };
    const injected = withSidecar(withoutOld, rendered, newStatus);
    if (!from && sameJson(injected, pod)) return this.skipped(pod, { id, path, kind, reason: 'already current' });
    const report: InjectReport = {
      id, path, kind, outcome: 'injected', convertedFromApp: from !== undefined, upgraded: status !== undefined,
      notCarried: from?.conversion.notCarried ?? [], changed: from?.conversion.changed ?? [],
    };
    this.reports.push(report);
    this.changes.push({ report, before: original, after: injected });
    return injected;
  }

  private skipped(definition: JsonObject, r: { id: string; path: string; kind: ResourceKind; reason: string }): JsonObject {
    const report: InjectReport = { ...r, outcome: 'skipped', convertedFromApp: false, upgraded: false, notCarried: [], changed: [] };
    this.reports.push(report);
    this.changes.push({ report, before: definition, after: definition });
    return definition;
  }

  private identity(id: string, labels: Record<string, string>, path: string): WorkloadIdentity {
    const found = workloadIdentityOf('pod', id, labels);
    if ('error' in found) {
      const label = labels[SERVICE_ACCOUNT_LABEL] !== undefined && found.error.includes(SERVICE_ACCOUNT_LABEL) ? SERVICE_ACCOUNT_LABEL : labels[NAMESPACE_LABEL] !== undefined ? NAMESPACE_LABEL : undefined;
      throw new MarathonParseError(label ? `${path}/labels/${label}` : `${path}/id`, found.error);
    }
    return workloadIdentity(this.config.trustDomain, found.namespace, found.serviceAccount);
  }

  /**
   * Why the workload is not to be injected (the label, else its namespace's default), or
   * undefined. A workload without a valid identity is judged by the defaults: it is an error
   * only if it is to be injected.
   */
  private optedOut(id: string, labels: Record<string, string>, path: string): string | undefined {
    const label = labels[LABEL.inject];
    if (label !== undefined && label !== 'true' && label !== 'false') {
      throw new MarathonParseError(`${path}/labels/${LABEL.inject}`, `"${label}" is neither "true" nor "false"`);
    }
    if (label === 'false') return `opt-out (${LABEL.inject}: "false")`;
    if (label === 'true') return undefined;
    const found = workloadIdentityOf('pod', id, labels);
    const namespace = 'error' in found ? undefined : found.namespace;
    if (!settingsFor(this.config, namespace ?? '').inject) {
      return `not opted in (namespace ${namespace ?? '(none)'} injects only with ${LABEL.inject}: "true")`;
    }
    return undefined;
  }

  private templateValues(
    id: string, identity: WorkloadIdentity, labels: Record<string, string>, containerPorts: number[], s: SidecarSettings, path: string,
  ) {
    const label = <T>(read: () => T): T => {
      try {
        return read();
      } catch (err) {
        if (err instanceof LabelError) throw new MarathonParseError(`${path}/labels/${err.label}`, err.message);
        throw err;
      }
    };
    const capture = label(() => captureModeOf(labels, s.capture));
    label(() => checkUpstreams(labels[LABEL.upstreams], [...containerPorts, s.adminPort, OUTBOUND_CAPTURE_PORT, INBOUND_CAPTURE_PORT]));
    const proxyCPU = label(() => proxyCpuOf(labels[LABEL.proxyCpu]) ?? s.proxyCpu);
    const proxyMemory = label(() => proxyMemoryOf(labels[LABEL.proxyMemory]) ?? s.proxyMemory);
    const bootstrap = envoyBootstrap({ identity, marathonId: id, certMode: s.certMode, capture, xdsAddress: s.xdsAddress, adminPort: s.adminPort });
    // the traffic labels are checked in either mode; only redirect capture uses them
    const traffic = label(() => captureRulesOf(labels, containerPorts, [...s.excludePorts, s.adminPort]));
    const rules = capture === 'redirect' ? traffic : undefined;
    const sds = s.certMode === 'sds';
    return {
      image: s.image,
      proxyCPU,
      proxyMemory,
      proxyUser: capture === 'redirect' ? 'root' : null,
      proxyCommand: proxyCommand(bootstrap, rules ? { script: this.config.captureScript, args: captureArgs(rules) } : undefined),
      marathonId: id,
      spiffeId: spiffeId(identity),
      namespace: identity.namespace,
      serviceAccount: identity.serviceAccount,
      trustDomain: identity.trustDomain,
      xdsAddress: formatHostPort(s.xdsAddress),
      certMode: s.certMode,
      capture,
      certHostPath: identityDirectory(sds ? s.sdsDir : s.certsDir, identity.namespace, identity.serviceAccount),
      certMountPath: sds ? SDS_MOUNT_PATH : CERTS_MOUNT_PATH,
      certReadOnly: !sds,
      adminPort: s.adminPort,
    };
  }
}

/** An absolute id, for an id written relative to the group `base`; the root group is `/`. */
function resolveId(id: string, base: string, at: string): string {
  if (id.split('/').every((s) => s === '' || s === '.')) return '/';
  try {
    return absoluteMarathonId(id, base);
  } catch (err) {
    throw new MarathonParseError(at, (err as Error).message);
  }
}

/** Istio writes proxyCPU as a Kubernetes quantity ("100m"); Marathon counts CPUs ("0.1"). */
export function proxyCpuOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(v.trim());
  const n = m ? Number(m[1]) / (m[2] ? 1000 : 1) : NaN;
  if (!(n > 0)) throw new LabelError(LABEL.proxyCpu, `"${v}" is not a CPU share (e.g. "0.1" or "100m")`);
  return n;
}

/** Memory in MB (Marathon's unit); Istio's "128Mi" and "1Gi" are read too. */
export function proxyMemoryOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(Mi|M|Gi|G)?$/.exec(v.trim());
  const n = m ? Number(m[1]) * (m[2]?.startsWith('G') ? 1024 : 1) : NaN;
  if (!(n > 0)) throw new LabelError(LABEL.proxyMemory, `"${v}" is not an amount of memory (MB, e.g. "128" or "128Mi")`);
  return n;
}

/** citadel.io/upstreams, by the mesh's one parser (src/mesh/upstreams.ts), with local ports free in the pod. */
export function checkUpstreams(v: string | undefined, taken: number[]): void {
  if (v === undefined) return;
  let upstreams;
  try {
    upstreams = parseUpstreams(v);
  } catch (err) {
    throw new LabelError(LABEL.upstreams, err instanceof UpstreamsLabelError ? err.reason : (err as Error).message);
  }
  for (const u of upstreams) {
    if (taken.includes(u.localPort)) throw new LabelError(LABEL.upstreams, `local port ${u.localPort} of "${u.service}" is already used in the pod (an endpoint, the proxy's, or another upstream)`);
  }
}

/** Equal as JSON values, whatever the order of object keys. */
export function sameJson(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  }
  if (isJsonObject(a) && isJsonObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && sameJson(a[k], b[k]));
  }
  return false;
}
