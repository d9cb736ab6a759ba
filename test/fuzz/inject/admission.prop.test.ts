/**
 * Properties of the admission proxy's reading of untrusted POST/PUT/PATCH bodies
 * (src/inject/admission.ts, json-reader.ts, app-to-pod.ts, identity-mounts.ts) and of
 * `citadel inject` on the same definitions: Marathon's real app, pod and group payloads
 * (shared/marathon), opted in and moved onto a container network, then mutated. Each either
 * gives a valid result or the module's own refusal (MarathonParseError, a 400/422 in Marathon's
 * format) with one-line reasons; never another error, a rejection or a hang; the same input
 * gives the same answer twice, and what was injected is left as it is when injected again.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { JsonObject, JsonValue } from '../../../src/common/json';
import { reviewDefinitionWrite, type AdmissionPolicy, type Verdict } from '../../../src/inject/admission';
import type { AdmissionRoute } from '../../../src/inject/admission-route';
import { convertAppToPod } from '../../../src/inject/app-to-pod';
import { injectConfig } from '../../../src/inject/config';
import { IdentityDirectories } from '../../../src/inject/identity-mounts';
import { inject } from '../../../src/inject/injector';
import { NamespaceMap } from '../../../src/inject/namespace-map';
import { isMarathonName, parseStatus } from '../../../src/inject/pod';
import { MarathonParseError } from '../../../src/marathon/model';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';
import { sharedMarathonDir } from '../../helpers/marathon-sim';
import { onContainerNetwork, systemFixtures } from '../../inject/fixtures';
import { applyOp, jsonOp, paths, type Json } from '../json-mutation';

type Obj = Record<string, any>;
const INJECT = 'sidecar.istio.io/inject';
const STATUS = 'sidecar.istio.io/status';
const config = injectConfig();
const sdsDir = '/var/run/citadel/sds';
const certsDir = '/var/lib/citadel/certs';

const optedIn = (d: JsonObject): JsonObject => ({ ...d, labels: { ...((d.labels as Obj) ?? {}), [INJECT]: 'true' } });
const fixtures = systemFixtures();
const apps = fixtures.filter((f) => f.kind === 'app').flatMap((f) => [f.json, optedIn(onContainerNetwork(f))]);
const pods = fixtures.filter((f) => f.kind === 'pod').flatMap((f) => [f.json, optedIn(onContainerNetwork(f))]);
const example = JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, 'examples', 'pod.json'), 'utf8')) as JsonObject;
const lastSegment = (d: JsonObject) => String(d.id).split('/').pop();
const groups: JsonObject[] = [
  JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, 'examples', 'group.json'), 'utf8')),
  {
    id: '/prod',
    apps: apps.slice(0, 4).map((a) => ({ ...a, id: `a-${lastSegment(a)}` })),
    pods: pods.slice(0, 4).map((p) => ({ ...p, id: `p-${lastSegment(p)}` })),
    groups: [{ id: 'sub', pods: [{ ...pods[1], id: 'inner' }] }],
  },
];
/** Pods injected once: their status label and sidecar are what re-injection reads and removes. */
const injectedPods = pods.map((p) => inject(p, config).definition as JsonObject).filter((p) => isInjected(p));
const definitions = [...apps, ...pods, example, ...injectedPods, ...groups].map((d) => ({ doc: d as Json, all: paths(d) }));

const TRICKY_STRINGS = [
  '__proto__', 'constructor', '', '/', '.', '..', '/prod/../x', 'true', 'false', 'host', 'container', 'container/bridge', 'DOCKER', 'MESOS', 'RO', 'RW',
  sdsDir, `${sdsDir}/prod/api`, `${sdsDir}/other/sa`, certsDir, `${certsDir}/`, '/var/run', '/', 'istio-proxy', 'citadel-certs', '{"version":"x"}', '{', '[1]',
  '0.1', '100m', '128Mi', '-1', 'redirect', 'explicit', 'web:8080', 'x:99999', '*', '10.0.0.0/8', 'Prod_X', 'a'.repeat(70),
];
const TRICKY_KEYS = [
  '__proto__', 'constructor', 'id', 'labels', INJECT, STATUS, 'istio.io/namespace', 'istio.io/service-account', 'citadel.io/upstreams', 'sidecar.istio.io/capture',
  'traffic.sidecar.istio.io/includeInboundPorts', 'sidecar.istio.io/proxyCPU', 'sidecar.istio.io/proxyMemory', 'cmd', 'args', 'container', 'docker', 'image',
  'type', 'volumes', 'hostPath', 'host', 'containerPath', 'mode', 'parameters', 'key', 'value', 'networks', 'portMappings', 'portDefinitions', 'ports',
  'ipAddress', 'containers', 'endpoints', 'containerPort', 'name', 'volumeMounts', 'spec', 'apps', 'pods', 'groups', 'healthChecks', 'constraints', 'resources',
];
const mutation = jsonOp(TRICKY_STRINGS, TRICKY_KEYS);
const mutated = (docs: typeof definitions) =>
  fc.tuple(fc.nat(docs.length - 1), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([i, ops]) => ops.reduce((d, op) => applyOp(d, docs[i].all, op), docs[i].doc));

function isInjected(v: JsonValue): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Array.isArray(v.containers) && v.containers.some((c) => (c as Obj)?.name === 'istio-proxy');
}

/** A reason a person reads: one line, not empty, no "undefined" or "[object Object]" leaking from a bug. */
function oneLine(text: unknown, what: string): void {
  assert.equal(typeof text, 'string', `${what}: a string`);
  const s = text as string;
  assert.ok(s.length > 0 && !/[\n\r]/.test(s), `${what}: one line: ${JSON.stringify(s)}`);
  assert.ok(!/\bundefined\b|\[object Object\]|\bNaN\b/.test(s), `${what}: ${JSON.stringify(s)}`);
}

function checkParseError(err: Error): void {
  const e = err as MarathonParseError;
  assert.ok(/^(\/|\()/.test(e.path), `path in Marathon's notation: ${JSON.stringify(e.path)}`);
  oneLine(e.reason, 'reason');
}

/** Each report that says injected points at a pod carrying the sidecar, with a status label that reads back. */
function checkInjected(out: JsonValue, reports: ReturnType<typeof inject>['reports']): void {
  for (const r of reports) {
    assert.ok(r.id.startsWith('/'), `absolute id ${r.id}`);
    if (r.outcome === 'skipped') {
      oneLine(r.reason, 'skip reason');
      continue;
    }
    for (const n of r.notCarried.concat(r.changed)) oneLine(n, 'conversion note');
    const at = locate(out, r.path) as Obj | undefined;
    if (at === undefined) continue; // an app of a group, converted: it moved to the group's pods
    assert.ok(isInjected(at), `${r.path}: a pod with the sidecar`);
    const status = parseStatus(at.labels[STATUS], r.path);
    for (const name of status.containers) {
      assert.ok(isMarathonName(name) && at.containers.some((c: Obj) => c.name === name), `${r.path}: status lists ${name}, which is there`);
    }
  }
}

/** The resource at a report's path (`(2)`, `/groups(1)/pods(0)`); undefined for an app of a group. */
function locate(root: JsonValue, at: string): JsonValue | undefined {
  let v: any = root;
  for (const [, key, index] of at.matchAll(/(?:\/(\w+))?\((\d+)\)/g)) {
    if (key === 'apps') return undefined;
    v = (key ? v[key] : v)[Number(index)];
  }
  return v;
}

describe('citadel inject on mutated definitions', () => {
  it('the seeds inject, and injecting the result again gives the same bytes (the property can fail)', () => {
    const injecting = definitions.filter(({ doc }) => inject(doc as JsonValue, config).reports.some((r) => r.outcome === 'injected'));
    assert.ok(injecting.length >= 10, `seeds that inject: ${injecting.length}`);
    for (const { doc } of definitions) {
      const once = inject(doc as JsonValue, config).definition;
      assert.equal(JSON.stringify(inject(once, config).definition), JSON.stringify(once));
    }
  });

  it('give an injected definition (injected again: the same bytes) or MarathonParseError, the input untouched, twice the same', () => {
    fc.assert(
      fc.property(mutated(definitions), (def) => {
        const before = JSON.stringify(def);
        const first = parseOrOwnError([MarathonParseError], () => inject(def as JsonValue, config));
        assert.equal(JSON.stringify(def), before, 'the input is not changed');
        const second = parseOrOwnError([MarathonParseError], () => inject(def as JsonValue, config));
        if ('error' in first) {
          checkParseError(first.error);
          assert.ok('error' in second, 'the same input fails twice');
          assert.equal(second.error.message, first.error.message);
          return;
        }
        assert.ok('value' in second);
        const text = JSON.stringify(first.value.definition);
        assert.equal(JSON.stringify(second.value.definition), text, 'the same input, the same output');
        checkInjected(first.value.definition, first.value.reports);
        const again = inject(JSON.parse(text) as JsonValue, config);
        assert.equal(JSON.stringify(again.definition), text, 'injecting the result again changes nothing');
        assert.ok(again.reports.every((r) => r.outcome === 'skipped'), 'nothing is injected twice');
      }),
      fuzzParameters(300),
    );
  });

  it('app to pod: a pod with one container (its name a Marathon name) or MarathonParseError', () => {
    const appDocs = definitions.slice(0, apps.length);
    fc.assert(
      fc.property(mutated(appDocs), (app) => {
        if (app === null || typeof app !== 'object' || Array.isArray(app)) return;
        const r = parseOrOwnError([MarathonParseError], () => convertAppToPod(app as JsonObject, '', new Set(['istio-proxy'])));
        if ('error' in r) return checkParseError(r.error);
        const pod = r.value.pod as Obj;
        assert.equal(pod.containers.length, 1);
        assert.ok(isMarathonName(pod.containers[0].name) && pod.containers[0].name !== 'istio-proxy', pod.containers[0].name);
        for (const n of r.value.notCarried.concat(r.value.changed)) oneLine(n, 'conversion note');
        assert.deepEqual(JSON.parse(JSON.stringify(r.value.pod)), r.value.pod, 'JSON-exact');
      }),
      fuzzParameters(300),
    );
  });
});

const ANY_ROUTE: AdmissionRoute[] = [
  { resource: 'pods', method: 'POST' },
  { resource: 'pods', method: 'PUT', id: '/prod/api' },
  { resource: 'apps', method: 'POST' },
  { resource: 'apps', method: 'PUT' },
  { resource: 'apps', method: 'PATCH', id: '/sleep' },
  { resource: 'groups', method: 'POST', id: '/' },
  { resource: 'groups', method: 'PUT', id: '/prod' },
];
const seedsOf = (docs: JsonObject[]) => docs.map((d) => ({ doc: d as Json, all: paths(d) }));
/** A seed, mutated, with a route that takes its kind: a create, or an update at its own id. */
const written = (resource: 'pods' | 'apps', docs: JsonObject[]) =>
  fc.tuple(fc.nat(docs.length - 1), fc.boolean(), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([i, update, ops]) => {
    const seed = seedsOf(docs)[i];
    const route: AdmissionRoute = update ? { resource, method: 'PUT', id: String(docs[i].id) } : { resource, method: 'POST' };
    return { route, def: ops.reduce((d, op) => applyOp(d, seed.all, op), seed.doc) };
  });
const appSeeds = apps.filter((a) => isInjected(inject(a, config).definition));
const podSeeds = [...pods, ...injectedPods];
const groupSeeds: JsonObject[] = [
  ...groups,
  { id: '/prod', pods: podSeeds.slice(0, 6).map((p, i) => ({ ...p, id: `p${i}` })), groups: [{ id: 'sub', pods: [{ ...podSeeds[1], id: 'inner' }] }] },
  { id: '/prod', apps: appSeeds.slice(0, 2).map((a) => ({ ...a, id: `a-${lastSegment(a)}` })) },
];
/** Writes: definitions on the routes that take them, as JSON text, cut short or with junk around; anything on any route; random text. */
const write = fc.oneof(
  { weight: 3, arbitrary: written('pods', podSeeds) },
  { weight: 3, arbitrary: written('apps', appSeeds) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom<AdmissionRoute>({ resource: 'groups', method: 'POST', id: '/' }, { resource: 'groups', method: 'PUT', id: '/prod' }), mutated(seedsOf(groupSeeds))).map(([route, def]) => ({ route, def })) },
  { weight: 1, arbitrary: fc.tuple(mutated(seedsOf(appSeeds)), mutated(seedsOf(apps))).map(([a, b]) => ({ route: { resource: 'apps', method: 'PUT' } as AdmissionRoute, def: [a, b] })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...ANY_ROUTE), mutated(definitions)).map(([route, def]) => ({ route, def })) },
).chain(({ route, def }) => {
  const text = JSON.stringify(def);
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant({ route, text }) },
    { weight: 1, arbitrary: fc.nat(text.length).map((n) => ({ route, text: text.slice(0, n) })) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('\uFEFF', ' ', '\n'), fc.constantFrom('', ' ', 'x', '}', '\u0000')).map(([a, b]) => ({ route, text: `${a}${text}${b}` })) },
  );
});
const anyWrite = fc.oneof({ weight: 9, arbitrary: write }, { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...ANY_ROUTE), fc.string({ unit: 'binary', maxLength: 80 })).map(([route, text]) => ({ route, text })) });
const directories = new IdentityDirectories([sdsDir, certsDir]);
const grants = new NamespaceMap([{ prefix: '/prod', namespaces: { any: false, names: ['prod', 'payments'] }, serviceAccounts: { any: true } }]);
const policyArb = fc.record({ convertApps: fc.boolean(), mapped: fc.boolean() }).map(({ convertApps, mapped }): AdmissionPolicy => ({
  inject: config,
  convertApps,
  directories,
  namespaces: mapped ? grants : new NamespaceMap(),
}));
/** Whether Marathon "has" an app: a fixed answer per id, so two reviews see the same Marathon. */
const appExists = async (id: string) => id.length % 2 === 0;

function checkVerdict(v: Verdict): void {
  if (v.kind === 'refuse') {
    assert.ok(v.refusal.status === 400 || v.refusal.status === 422, `status ${v.refusal.status}`);
    oneLine(v.refusal.body.message, 'message');
    const details = v.refusal.body.details;
    if (v.refusal.status === 400) return assert.equal(typeof details, 'string'); // JSON.parse's own words, as Marathon gives its parser's
    assert.ok(Array.isArray(details) && details.length > 0, 'details name what is wrong');
    for (const d of details) {
      assert.ok(/^(\/|\()/.test(d.path), `detail path ${JSON.stringify(d.path)}`);
      assert.ok(d.errors.length > 0);
      d.errors.forEach((e) => oneLine(e, d.path));
    }
    return;
  }
  assert.equal(v.kind, 'forward');
  if (v.body !== undefined) JSON.parse(v.body);
  if (v.rewrite) assert.match(v.rewrite.path, /^\/v2\/pods(\/|$)/);
  for (const id of [...v.injected, ...v.converted, ...v.keptApps]) assert.ok(id.startsWith('/'), `absolute id ${id}`);
}

describe('the admission proxy on mutated bodies', () => {
  it("forwards (bodies JSON) or refuses in Marathon's format with one-line reasons; never rejects; the same body, the same verdict; a body it injected, sent again, passes unchanged", async () => {
    await fc.assert(
      fc.asyncProperty(anyWrite, policyArb, async ({ route, text }, policy) => {
        const first = await reviewDefinitionWrite(route, text, policy, appExists);
        checkVerdict(first);
        assert.deepEqual(await reviewDefinitionWrite(route, text, policy, appExists), first, 'the same body, the same verdict');
        if (first.kind === 'forward' && first.body !== undefined) {
          const next: AdmissionRoute = first.rewrite
            ? { resource: 'pods', method: first.rewrite.method, ...(first.rewrite.method === 'PUT' ? { id: first.rewrite.path.slice('/v2/pods'.length) } : {}) }
            : route;
          const again = await reviewDefinitionWrite(next, first.body, policy, appExists);
          assert.equal(again.kind, 'forward', JSON.stringify(again));
          assert.deepEqual((again as { injected: string[] }).injected, [], 'nothing injected twice');
          assert.equal((again as { body?: string }).body, undefined, 'forwarded unchanged');
        }
      }),
      { ...fuzzParameters(300), timeout: 5000 },
    );
  });

  it("a mount of another identity's directory is refused at its path (the property can fail)", async () => {
    const onContainer = pods.filter((p) => Array.isArray(p.networks) && (p.networks as Obj[]).some((n) => n.mode === 'container'));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...onContainer), fc.constantFrom(`${sdsDir}/other/sa`, certsDir, '/var', `${sdsDir}/x/../other/sa`, `${certsDir}//`), async (p, host) => {
        const def = structuredClone(p) as Obj;
        def.volumes = [...(def.volumes ?? []), { name: 'stolen', host }];
        def.containers[0].volumeMounts = [...(def.containers[0].volumeMounts ?? []), { name: 'stolen', mountPath: '/stolen' }];
        const v = await reviewDefinitionWrite({ resource: 'pods', method: 'POST' }, JSON.stringify(def), { inject: config, convertApps: false, directories, namespaces: new NamespaceMap() }, appExists);
        assert.equal(v.kind, 'refuse');
        const details = (v as Extract<Verdict, { kind: 'refuse' }>).refusal.body.details as Array<{ path: string }>;
        assert.ok(details.some((d) => /^\/containers\(0\)\/volumeMounts\(\d+\)$/.test(d.path)), JSON.stringify(details));
      }),
      fuzzParameters(50),
    );
  });

  it('identity mounts: any host path and any JSON give one-line problems at JSON paths, or none; never an exception', () => {
    const hostPath = fc.oneof(
      fc.constantFrom(...TRICKY_STRINGS),
      fc.string({ maxLength: 40 }),
      fc.array(fc.constantFrom('var', 'run', 'citadel', 'sds', 'lib', 'certs', '..', '.', '', 'prod', 'api'), { maxLength: 6 }).map((s) => `/${s.join('/')}`),
    );
    const own = fc.option(fc.record({ namespace: fc.constantFrom('prod', 'x', ''), serviceAccount: fc.constantFrom('api', 'default', '') }), { nil: undefined });
    fc.assert(
      fc.property(hostPath, own, mutated(definitions), (host, who, def) => {
        const problem = directories.problemWith(host, who);
        if (problem !== undefined) oneLine(problem, 'mount problem');
        if (def === null || typeof def !== 'object' || Array.isArray(def)) return;
        for (const p of [...directories.podProblems(def as JsonObject, '', who), ...directories.appProblems(def as JsonObject, '', who)]) {
          assert.match(p.path, /^\//);
          oneLine(p.error, p.path);
        }
      }),
      fuzzParameters(300),
    );
  });
});
