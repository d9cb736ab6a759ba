/**
 * Properties of the Marathon payload boundary (src/marathon/model.ts, invalidationsOf in
 * src/marathon/client.ts): random JSON and mutated real payloads from shared/marathon.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { invalidationsOf } from '../../../src/marathon/client';
import {
  Malformed, MarathonApp, MarathonGroup, MarathonParseError, MarathonPod, MarathonPort, MarathonTask, parseApp, parseAppList,
  parseGroup, parseMarathonEvent, parsePod, parsePodList, parseTask, parseTaskList, MARATHON_EVENT_TYPES,
} from '../../../src/marathon/model';
import { SseParser } from '../../../src/marathon/sse';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';
import { sharedMarathonDir } from '../../helpers/marathon-sim';
import { applyOp, jsonOp, jsonValue, paths, type Json } from '../json-mutation';

const read = (rel: string): Json => JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, rel), 'utf8'));
const dir = (rel: string) => fs.readdirSync(path.join(sharedMarathonDir, rel)).filter((f) => f.endsWith('.json')).map((f) => `${rel}/${f}`);

// --- what a parsed value must look like, whatever came in ---

const MODES = new Set(['host', 'container', 'container/bridge']);
const isStr = (v: unknown) => typeof v === 'string';
const optStr = (v: unknown) => v === undefined || typeof v === 'string';
const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
const optFinite = (v: unknown) => v === undefined || finite(v);

function checkLabels(l: Record<string, string>, where: string): void {
  assert.equal(Object.getPrototypeOf(l), Object.prototype, `${where}: labels are a plain object`);
  for (const v of Object.values(l)) assert.ok(isStr(v), `${where}: label values are strings`);
}
function checkNetworks(ns: Array<{ mode: unknown; name?: unknown }>, where: string): void {
  assert.ok(ns.length > 0, `${where}: at least one network`);
  for (const n of ns) {
    assert.ok(isStr(n.mode) && MODES.has(n.mode as string), `${where}: network mode ${String(n.mode)}`);
    assert.ok(optStr(n.name), `${where}: network name`);
  }
}
function checkPort(p: MarathonPort, where: string): void {
  assert.ok(isStr(p.protocol), `${where}: protocol`);
  assert.ok(optStr(p.name) && optFinite(p.containerPort) && optFinite(p.hostPort) && optFinite(p.servicePort), `${where}: port fields`);
}
function checkTask(t: MarathonTask, where: string): void {
  assert.ok(isStr(t.id) && isStr(t.host) && isStr(t.state), `${where}: task strings`);
  assert.ok(isStr(t.appId) && t.appId.startsWith('/'), `${where}: task appId`);
  assert.ok(t.ports.every(finite), `${where}: task ports`);
  assert.ok(t.ipAddresses.every((a) => isStr(a.ipAddress) && isStr(a.protocol)), `${where}: task addresses`);
  assert.ok(optStr(t.slaveId) && optStr(t.version), `${where}: task optional strings`);
}
function checkApp(a: MarathonApp, where = 'app'): void {
  assert.ok(isStr(a.id) && a.id.startsWith('/'), `${where}: id`);
  checkLabels(a.labels, where);
  assert.ok(finite(a.instances), `${where}: instances`);
  checkNetworks(a.networks, where);
  a.ports.forEach((p) => checkPort(p, where));
  a.tasks.forEach((t) => checkTask(t, where));
  assert.ok(optStr(a.version), `${where}: version`);
}
function checkPod(p: MarathonPod, where = 'pod'): void {
  assert.ok(isStr(p.id) && p.id.startsWith('/'), `${where}: id`);
  checkLabels(p.labels, where);
  assert.ok(finite(p.instances), `${where}: instances`);
  checkNetworks(p.networks, where);
  for (const c of p.containers) {
    assert.ok(isStr(c.name), `${where}: container name`);
    c.endpoints.forEach((e) => checkPort(e, where));
  }
  for (const i of p.podInstances) assert.ok(isStr(i.id) && isStr(i.status) && isStr(i.agentHostname) && optStr(i.agentId), `${where}: instance`);
  assert.ok(optStr(p.version), `${where}: version`);
}
function checkGroup(g: MarathonGroup): void {
  assert.ok(isStr(g.id) && g.id.startsWith('/'), 'group id');
  g.apps.forEach((a) => checkApp(a));
  g.pods.forEach((p) => checkPod(p));
  g.groups.forEach(checkGroup);
}
function checkMalformed(ms: Malformed[]): void {
  for (const m of ms) assert.ok(isStr(m.path) && isStr(m.reason) && optStr(m.id) && ['app', 'pod', 'group', 'task'].includes(m.kind), 'malformed entry');
}

// --- the parsers, each with its real payloads ---

interface Boundary {
  name: string;
  payloads: Json[];
  /** Parses and checks the result's shape; throws what the parser throws. */
  run(v: Json): unknown;
}
const listed = <T>(parse: (v: Json, m: Malformed[]) => T[], check: (t: T) => void) => (v: Json) => {
  const malformed: Malformed[] = [];
  const out = parse(v, malformed);
  out.forEach(check);
  checkMalformed(malformed);
  return { out, malformed };
};
const pods = dir('system-pods').map(read).concat(read('examples/pod.json'));
const boundaries: Boundary[] = [
  { name: 'parseApp', payloads: [...dir('system-apps').map(read), read('examples/app.json'), read('examples/app_patch.json'), ...(read('examples/apps_create.json') as Json[])], run: (v) => { const a = parseApp(v); checkApp(a); return a; } },
  { name: 'parsePod', payloads: pods, run: (v) => { const p = parsePod(v); checkPod(p); return p; } },
  { name: 'parseTask', payloads: [(read('examples/app_task.json') as { task: Json }).task], run: (v) => { const t = parseTask(v); checkTask(t, 'task'); return t; } },
  { name: 'parseAppList', payloads: [read('examples/app_list.json'), { apps: dir('system-apps').map(read) }], run: listed(parseAppList, (a) => checkApp(a)) },
  { name: 'parsePodList', payloads: [pods], run: listed(parsePodList, (p) => checkPod(p)) },
  { name: 'parseTaskList', payloads: [read('examples/tasks.json'), read('examples/app_tasks.json')], run: listed(parseTaskList, (t) => checkTask(t, 'task')) },
  {
    name: 'parseGroup',
    payloads: [read('examples/group.json'), read('group-dumps/155_100.json')],
    run: (v) => {
      const malformed: Malformed[] = [];
      const g = parseGroup(v, malformed);
      checkGroup(g);
      checkMalformed(malformed);
      return { g, malformed };
    },
  },
];

const TRICKY_STRINGS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '', '/', 'HOST', 'BRIDGE', 'USER', 'NONE', 'host', 'container', 'container/bridge', 'tcp', 'TASK_RUNNING'];
const TRICKY_KEYS = ['__proto__', 'constructor', 'id', 'appId', 'labels', 'networks', 'mode', 'container', 'docker', 'network', 'portMappings', 'portDefinitions', 'ports', 'ipAddress', 'discovery', 'tasks', 'spec', 'instances', 'scaling', 'apps', 'groups', 'pods', 'containers', 'endpoints', 'protocol', 'host', 'agentHostname', 'version'];
const mutation = jsonOp(TRICKY_STRINGS, TRICKY_KEYS);

describe('Marathon payload boundary properties', () => {
  for (const b of boundaries) {
    it(`${b.name}: the real payloads parse, and parse the same after a JSON round trip`, () => {
      for (const p of b.payloads) assert.deepEqual(b.run(JSON.parse(JSON.stringify(p))), b.run(p));
    });

    it(`${b.name}: random JSON only ever raises MarathonParseError`, () => {
      const input = b.name.endsWith('List')
        ? fc.oneof(jsonValue, fc.array(jsonValue, { maxLength: 4 }), fc.record({ apps: fc.array(jsonValue, { maxLength: 3 }), tasks: fc.array(jsonValue, { maxLength: 3 }) }, { noNullPrototype: true }))
        : fc.oneof(jsonValue, fc.dictionary(fc.constantFrom(...TRICKY_KEYS), jsonValue, { maxKeys: 6, noNullPrototype: true }));
      fc.assert(
        fc.property(input, (v) => {
          parseOrOwnError([MarathonParseError], () => b.run(v));
        }),
        fuzzParameters(300),
      );
    });

    it(`${b.name}: mutated real payloads parse to well-formed values (the same after a JSON round trip) or raise MarathonParseError`, () => {
      const docs = b.payloads.map((p) => ({ doc: p, all: paths(p) }));
      fc.assert(
        fc.property(fc.nat(docs.length - 1), fc.array(mutation, { minLength: 1, maxLength: 3 }), (which, ops) => {
          const { doc, all } = docs[which];
          const mutated = ops.reduce((d, op) => applyOp(d, all, op), doc);
          const r = parseOrOwnError([MarathonParseError], () => b.run(mutated));
          if ('value' in r) assert.deepEqual(b.run(JSON.parse(JSON.stringify(mutated))), r.value);
        }),
        fuzzParameters(b.name === 'parseGroup' ? 60 : 300),
      );
    });
  }

  it('a list keeps every element it can parse and reports every one it cannot', () => {
    const apps = dir('system-apps').map(read);
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom(...apps), jsonValue), { maxLength: 8 }), (items) => {
        const malformed: Malformed[] = [];
        const out = parseAppList({ apps: items }, malformed);
        assert.equal(out.length + malformed.length, items.length);
        assert.deepEqual(out.map((a) => a.id), items.flatMap((i) => (parseOrOwnError([MarathonParseError], () => parseApp(i)) as { value?: MarathonApp }).value?.id ?? []));
      }),
      fuzzParameters(200),
    );
  });

  // Event data arrives as parsed JSON from the SSE stream; parseMarathonEvent (model.ts) types it, invalidationsOf (client.ts) maps it.
  it('events: any data of any type parses to a typed event or a MarathonParseError, and gives only well-formed invalidations', () => {
    const events: Array<{ event: string; data: Json }> = [];
    const p = new SseParser((e) => events.push({ event: e.event, data: JSON.parse(e.data) }));
    p.push(fs.readFileSync(path.join(sharedMarathonDir, 'examples', 'events.txt'), 'utf8') + '\n\n');
    const TYPES = ['health_status_changed_event', 'api_post_event', 'pod_created_event', 'pod_updated_event', 'pod_deleted_event', 'group_change_success', 'deployment_success', 'deployment_failed', 'status_update_event', 'instance_changed_event', 'app_terminated_event', 'event_stream_attached'];
    const deployment = fc.record({ plan: fc.record({ steps: fc.array(fc.oneof(jsonValue, fc.record({ actions: fc.array(fc.oneof(jsonValue, fc.record({ app: jsonValue, pod: jsonValue }, { noNullPrototype: true })), { maxLength: 3 }) }, { noNullPrototype: true })), { maxLength: 3 }) }, { noNullPrototype: true }) }, { noNullPrototype: true });
    const data = fc.oneof(
      fc.dictionary(fc.constantFrom('appDefinition', 'uri', 'groupId', 'plan', 'appId', 'runSpecId', 'id'), fc.oneof(jsonValue, fc.constantFrom('/v2/pods/a::status', '/v2/apps/x/y', '', '/')), { maxKeys: 4, noNullPrototype: true }),
      deployment,
      fc.array(jsonValue, { maxLength: 2 }),
      fc.tuple(fc.nat(events.length - 1), fc.array(mutation, { maxLength: 2 })).map(([i, ops]) => ops.reduce((d, op) => applyOp(d, paths(events[i].data), op), events[i].data)),
    );
    fc.assert(
      fc.property(fc.constantFrom(...TYPES), data, (type, d) => {
        const r = parseOrOwnError([MarathonParseError], () => parseMarathonEvent(type, d));
        if ('error' in r) return assert.ok(d === null || typeof d !== 'object' || Array.isArray(d), 'only non-objects are refused');
        if (r.value === undefined) return assert.ok(!MARATHON_EVENT_TYPES.has(type));
        for (const inv of invalidationsOf(r.value)) assert.match(inv, /^(app|pod|group|any):\//);
      }),
      fuzzParameters(400),
    );
  });
});
