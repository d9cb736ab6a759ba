/**
 * The admission proxy's decision on one write of Marathon definitions: refuse it (422 in
 * Marathon's format, naming the JSON path), or forward it, its pods injected with the sidecar and,
 * with --convert-apps, an opted-in app sent to /v2/pods as the pod it becomes. Pure but for the
 * question "does Marathon already have this app?", which the caller answers.
 *
 * Checked in every definition, injected or not: host mounts of the node agent's directories
 * other than the workload's own identity's (identity-mounts.ts), and istio.io/* labels claiming a
 * namespace or service account its path may not use (namespace-map.ts).
 */
import { forEachLimited } from '../common/concurrency';
import { MarathonParseError } from '../marathon/model';
import { workloadIdentityOf } from '../marathon/workload';
import { LABEL } from '../mesh/bootstrap/contract';
import { absoluteMarathonId } from '../mesh/bootstrap/identity';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';
import type { AdmissionRoute } from './admission-route';
import type { InjectConfig } from './config';
import type { IdentityDirectories, OwnIdentity } from './identity-mounts';
import { definitionKind, inject } from './injector';
import type { NamespaceMap } from './namespace-map';
import { groupDetails, objectNotValid, type Refusal } from './refusal';

export interface AdmissionPolicy {
  inject: InjectConfig;
  /** an opted-in app is sent to /v2/pods as a pod; without it, it is refused */
  convertApps: boolean;
  directories: IdentityDirectories;
  namespaces: NamespaceMap;
}

export interface Forward {
  kind: 'forward';
  /** the body to send; undefined: the request's own bytes, unchanged */
  body?: string;
  /** an app converted into a pod goes to /v2/pods instead */
  rewrite?: { method: 'POST' | 'PUT'; path: string };
  /** ids of the pods injected (converted apps included) */
  injected: string[];
  /** ids of the apps converted into pods */
  converted: string[];
  /** opted-in apps Marathon already has, updated as apps (converting happens only on creation) */
  keptApps: string[];
}

export type Verdict = Forward | { kind: 'refuse'; refusal: Refusal };

/** Whether Marathon has the app `id` (GET /v2/apps/<id> with the client's credentials); may throw to answer the client instead. */
export type AppLookup = (id: string) => Promise<boolean>;

/** One app or pod of the body, where it sits and how to replace it there. */
interface Member {
  kind: 'app' | 'pod';
  json: JsonObject;
  /** its JSON path in the body, Marathon's notation; '' for the body itself */
  at: string;
  /** absolute; undefined when the body gives none (a problem at `<at>/id` is recorded) */
  id: string | undefined;
  /** a pod status (`{spec: <pod>}`, as GET /v2/groups lists pods) is checked, never injected */
  status: boolean;
  set(v: JsonObject): void;
}

interface Problem {
  path: string;
  error: string;
}

const LOOKUP_CONCURRENCY = 8;

/**
 * Reviews the body `text` of a write on `route`. A body that is not JSON is refused as Marathon
 * would (400 "Invalid JSON"), since Marathon's parser takes texts JSON.parse does not (trailing
 * content) and an unread definition must not pass; an empty body, or JSON that is not a
 * definition, goes to Marathon as it is, for Marathon's own answer.
 */
export async function reviewDefinitionWrite(route: AdmissionRoute, text: string, policy: AdmissionPolicy, appExists: AppLookup): Promise<Verdict> {
  const unchanged: Forward = { kind: 'forward', injected: [], converted: [], keptApps: [] };
  if (text.trim() === '') return unchanged;
  let body: JsonValue;
  try {
    body = JSON.parse(text.replace(/^\uFEFF/, '')) as JsonValue;
  } catch (err) {
    return { kind: 'refuse', refusal: { status: 400, body: { message: 'Invalid JSON', details: (err as Error).message } } };
  }
  const problems: Problem[] = [];
  const { members, mismatch } = membersOf(route, body, problems);
  for (const m of members) problems.push(...checks(m, policy));
  if (problems.length) return { kind: 'refuse', refusal: objectNotValid(groupDetails(problems)) };
  // Marathon refuses a body whose id is not the path's (400); forwarded as it is, checked under both ids
  if (mismatch) return unchanged;

  const injected: string[] = [];
  // opted-in apps, each the pod it becomes or why it cannot (an update of an app Marathon has may be partial)
  const candidates: Array<{ member: Member; pod?: JsonObject; problems: Problem[]; optInLabel: boolean }> = [];
  for (const m of members) {
    if (m.status || m.id === undefined || definitionKind(m.json) !== m.kind) continue;
    const mine: Problem[] = [];
    const result = injectOne(m, policy.inject, mine);
    if (m.kind === 'pod') {
      problems.push(...mine);
      if (!result) continue;
      m.set(withIdAsWritten(result, m.json));
      injected.push(m.id);
    } else if (result || mine.length) {
      candidates.push({ member: m, pod: result, problems: mine, optInLabel: isJsonObject(m.json.labels) && m.json.labels[LABEL.inject] === 'true' });
    }
  }
  if (problems.length) return { kind: 'refuse', refusal: objectNotValid(groupDetails(problems)) };

  // An app Marathon has stays an app: converting it would clash with itself (and a scaling PUT is no creation).
  const keptApps: string[] = [];
  if (route.method !== 'POST' && candidates.length) {
    const existing = new Set<string>();
    await forEachLimited(candidates, LOOKUP_CONCURRENCY, async (c) => {
      if (await appExists(c.member.id!)) existing.add(c.member.id!);
    });
    for (let i = candidates.length - 1; i >= 0; i--) {
      if (existing.has(candidates[i].member.id!)) {
        keptApps.unshift(candidates[i].member.id!);
        candidates.splice(i, 1);
      }
    }
  }

  const broken = candidates.flatMap((c) => c.problems);
  if (broken.length) return { kind: 'refuse', refusal: objectNotValid(groupDetails(broken)) };
  const single = route.resource === 'apps' && members.length === 1 && members[0].at === '';
  if (candidates.length && single) {
    const [{ member, pod, optInLabel }] = candidates;
    const id = member.id!;
    if (!policy.convertApps) {
      return {
        kind: 'refuse',
        refusal: objectNotValid(
          [{ path: optInLabel ? `/labels/${LABEL.inject}` : '/', errors: [`app ${id} opts in to sidecar injection${optInLabel ? '' : ' (its namespace injects by default)'}; this proxy converts apps into pods only with --convert-apps`] }],
          `App ${id} opts in to sidecar injection, and a Marathon app has one container, so the sidecar needs it as a pod: run "citadel inject -f app.json > pod.json" and POST pod.json to /v2/pods (or start citadel admission-proxy with --convert-apps)`,
        ),
      };
    }
    const rewrite = route.method === 'POST' ? { method: 'POST' as const, path: '/v2/pods' } : { method: 'PUT' as const, path: `/v2/pods${id}` };
    return { kind: 'forward', body: JSON.stringify(pod!), rewrite, injected: [id], converted: [id], keptApps };
  }
  if (candidates.length) {
    const where = route.resource === 'groups' ? "Marathon's /v2/groups does not create pods" : 'a list update of /v2/apps cannot create a pod';
    return {
      kind: 'refuse',
      refusal: objectNotValid(groupDetails(candidates.map(({ member }) => ({
        path: member.at,
        error: `app ${member.id!} opts in to sidecar injection and would become a pod, which ${where}: POST it on its own to /v2/apps through the admission proxy (with --convert-apps), or run "citadel inject" on it and POST the pod to /v2/pods`,
      })))),
    };
  }
  return { kind: 'forward', ...(injected.length ? { body: JSON.stringify(body) } : {}), injected, converted: [], keptApps };
}

/** The apps and pods of the body, by route; ids resolved as Marathon resolves them. */
function membersOf(route: AdmissionRoute, body: JsonValue, problems: Problem[]): { members: Member[]; mismatch: boolean } {
  const members: Member[] = [];
  let mismatch = false;
  const add = (kind: 'app' | 'pod', json: JsonObject, at: string, base: string, set: (v: JsonObject) => void, pathId?: string) => {
    if (kind === 'pod' && isJsonObject(json.spec) && !('containers' in json)) {
      members.push(member('pod', json.spec, `${at}/spec`, base, () => {}, true));
      return;
    }
    if (pathId !== undefined) {
      const written = typeof json.id === 'string' ? resolveRunSpecId(json.id, '/') : undefined;
      if (written !== undefined && written !== pathId) {
        mismatch = true;
        members.push(member(kind, json, at, '/', set, false));
      }
      members.push({ kind, json, at, id: pathId, status: false, set });
      return;
    }
    members.push(member(kind, json, at, base, set, false));
  };
  const member = (kind: 'app' | 'pod', json: JsonObject, at: string, base: string, set: (v: JsonObject) => void, status: boolean): Member => {
    let id: string | undefined;
    if (typeof json.id !== 'string') problems.push({ path: `${at}/id`, error: 'is missing: every app and pod needs an id' });
    else {
      id = resolveRunSpecId(json.id, base);
      if (id === undefined) problems.push({ path: `${at}/id`, error: `"${json.id}" is not a Marathon path id (lowercase letters, digits, dashes and dots per segment)` });
    }
    return { kind, json, at, id, status, set };
  };

  if (route.resource === 'groups') {
    if (!isJsonObject(body)) return { members, mismatch };
    const root = resolveGroupId(route.id ?? '/', '/');
    const gid = typeof body.id === 'string' ? resolveGroupId(body.id, root ?? '/') : root;
    if (gid === undefined) {
      problems.push({ path: '/id', error: 'is not a Marathon group id' });
      return { members, mismatch };
    }
    walkGroup(body, '', gid, add, problems);
    return { members, mismatch };
  }
  const kind = route.resource === 'pods' ? 'pod' : 'app';
  const pathId = route.id !== undefined ? resolveRunSpecId(route.id, '/') : undefined;
  if (route.id !== undefined && pathId === undefined) {
    // Marathon answers a bad path itself; the body is still checked under its own id
    if (isJsonObject(body)) add(kind, body, '', '/', () => {});
    return { members, mismatch: true };
  }
  if (Array.isArray(body) && route.resource === 'apps' && route.id === undefined) {
    body.forEach((a, i) => {
      if (isJsonObject(a)) add('app', a, `(${i})`, '/', (v) => (body[i] = v));
    });
  } else if (isJsonObject(body)) {
    const whole = body;
    add(kind, whole, '', '/', (v) => {
      for (const k of Object.keys(whole)) delete whole[k];
      Object.assign(whole, v);
    }, pathId);
  }
  return { members, mismatch };
}

type Add = (kind: 'app' | 'pod', json: JsonObject, at: string, base: string, set: (v: JsonObject) => void) => void;

function walkGroup(g: JsonObject, at: string, gid: string, add: Add, problems: Problem[]): void {
  for (const key of ['apps', 'pods'] as const) {
    const list = g[key];
    if (!Array.isArray(list)) continue;
    list.forEach((x, i) => {
      if (isJsonObject(x)) add(key === 'apps' ? 'app' : 'pod', x, `${at}/${key}(${i})`, gid, (v) => (list[i] = v));
    });
  }
  const groups = g.groups;
  if (!Array.isArray(groups)) return;
  groups.forEach((sub, i) => {
    if (!isJsonObject(sub)) return;
    const subId = typeof sub.id === 'string' ? resolveGroupId(sub.id, gid) : undefined;
    if (subId === undefined) problems.push({ path: `${at}/groups(${i})/id`, error: typeof sub.id === 'string' ? `"${sub.id}" is not a Marathon group id` : 'is missing: every group needs an id' });
    else walkGroup(sub, `${at}/groups(${i})`, subId, add, problems);
  });
}

function checks(m: Member, policy: AdmissionPolicy): Problem[] {
  const labels = stringLabels(m.json.labels);
  const found = m.id !== undefined ? workloadIdentityOf(m.kind, m.id, labels) : undefined;
  const own: OwnIdentity | undefined = found && !('error' in found) ? found : undefined;
  const mounts = m.kind === 'pod' ? policy.directories.podProblems(m.json, m.at, own) : policy.directories.appProblems(m.json, m.at, own);
  const claims = m.id !== undefined ? policy.namespaces.claimProblems(m.kind, m.id, labels, m.at) : [];
  return [...mounts, ...claims];
}

/** The injected definition, or undefined when injection leaves it as it is; a broken one is a problem at its path. */
function injectOne(m: Member, config: InjectConfig, problems: Problem[]): JsonObject | undefined {
  try {
    const result = inject({ ...m.json, id: m.id! }, config);
    if (result.reports[0]?.outcome !== 'injected') return undefined;
    return result.definition as JsonObject;
  } catch (err) {
    if (!(err instanceof MarathonParseError)) throw err;
    problems.push({ path: `${m.at}${err.path === '/' ? '' : err.path}`, error: err.reason });
    return undefined;
  }
}

/** The id as the request wrote it (relative in a group, absent under PUT /v2/pods/<id>); the sidecar knows the absolute one. */
function withIdAsWritten(injected: JsonObject, written: JsonObject): JsonObject {
  const out: JsonObject = { ...injected };
  if (typeof written.id === 'string') out.id = written.id;
  else delete out.id;
  return out;
}

function stringLabels(v: JsonValue | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (isJsonObject(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

/** An app or pod id made absolute against its group, or undefined when it is not a valid one. */
function resolveRunSpecId(id: string, base: string): string | undefined {
  try {
    return absoluteMarathonId(id, base);
  } catch {
    return undefined;
  }
}

/** A group id made absolute (Marathon's canonicalPath); `/` is the root group. */
function resolveGroupId(id: string, base: string): string | undefined {
  const joined = id.startsWith('/') ? id : `${base}/${id}`;
  if (joined.split('/').every((s) => s === '' || s === '.')) return '/';
  const segments: string[] = [];
  for (const s of joined.split('/')) {
    if (s === '..') segments.pop();
    else if (s !== '' && s !== '.') segments.push(s);
  }
  if (segments.length === 0) return '/';
  return resolveRunSpecId(`/${segments.join('/')}`, '/');
}
