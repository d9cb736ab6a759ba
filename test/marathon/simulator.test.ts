import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IpPool, parseCidr } from '../../src/marathon/sim/ip-pool';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { sharedMarathonDir, startMarathonSimProcess } from '../helpers/marathon-sim';
import { waitFor } from '../helpers/wait';

const readJson = (...p: string[]) => JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, ...p), 'utf8')) as Record<string, unknown>;

async function call(base: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + p, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    redirect: 'manual',
  });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Opens /v2/events with a raw socket and collects the exact bytes. */
function openStream(base: string, query = '', accept = 'text/event-stream'): Promise<{ res: http.IncomingMessage; bytes: () => string; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/v2/events${query}`, { headers: { Accept: accept }, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      resolve({ res, bytes: () => data, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}


describe('marathon simulator: definitions', () => {
  let sim: MarathonSimulator;
  let base: string;
  before(async () => {
    sim = new MarathonSimulator();
    base = await sim.listen(0);
  });
  after(() => sim.close());

  it('accepts every system-test app and pod definition Marathon posts', async () => {
    for (const file of fs.readdirSync(path.join(sharedMarathonDir, 'system-apps'))) {
      const def = readJson('system-apps', file);
      const r = await call(base, 'POST', '/v2/apps', def);
      assert.equal(r.status, 201, `${file}: ${r.text}`);
      assert.ok(r.headers.get('marathon-deployment-id'), file);
      assert.equal(r.json.deployments.length, 1);
      const got = await call(base, 'GET', `/v2/apps${r.json.id}`);
      assert.equal(got.status, 200);
      assert.equal(got.json.app.tasks.length, got.json.app.instances, file);
      // answered in the 1.5+ format only
      assert.equal(got.json.app.ports, undefined, file);
      assert.equal(got.json.app.ipAddress, undefined, file);
      assert.equal(got.json.app.container?.docker?.network, undefined, file);
      assert.ok(Array.isArray(got.json.app.networks), file);
      assert.equal((await call(base, 'DELETE', `/v2/apps${r.json.id}`)).status, 200);
    }
    for (const file of fs.readdirSync(path.join(sharedMarathonDir, 'system-pods'))) {
      const def = readJson('system-pods', file);
      const r = await call(base, 'POST', '/v2/pods', def);
      assert.equal(r.status, 201, `${file}: ${r.text}`);
      const status = await call(base, 'GET', `/v2/pods${def.id}::status`);
      assert.equal(status.status, 200);
      assert.equal(status.json.instances.length, r.json.scaling.instances, file);
      assert.ok(status.json.instances.every((i: any) => /^agent-\d$/.test(i.agentHostname)), file);
      const del = await call(base, 'DELETE', `/v2/pods${def.id}`);
      assert.equal(del.status, 202);
      assert.equal(del.text, '');
    }
    assert.equal(sim.state.apps.size + sim.state.pods.size, 0);
  });

  it('converts the legacy networking fields', async () => {
    const r = await call(base, 'POST', '/v2/apps', { id: '/legacy/web', cmd: 'x', ports: [0, 0] });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.portDefinitions.length, 2);
    assert.ok(r.json.portDefinitions.every((p: any) => p.port >= 10000));
    const bridge = await call(base, 'POST', '/v2/apps', { id: '/legacy/bridge', container: { type: 'DOCKER', docker: { image: 'nginx', network: 'BRIDGE', portMappings: [{ containerPort: 80 }] } } });
    assert.equal(bridge.status, 201, bridge.text);
    assert.deepEqual(bridge.json.networks, [{ mode: 'container/bridge' }]);
    assert.equal(bridge.json.container.portMappings[0].containerPort, 80);
    assert.equal(bridge.json.container.docker.portMappings, undefined);
  });

  it('answers Marathon errors: 422 with paths, 400 malformed/empty, 409 duplicate, 404 unknown', async () => {
    let r = await call(base, 'POST', '/v2/apps', { id: '/Bad_Id', cmd: 'x' });
    assert.equal(r.status, 422);
    assert.equal(r.json.message, 'Object is not valid');
    assert.equal(r.json.details[0].path, '/id');
    r = await call(base, 'POST', '/v2/apps', { id: '/nocmd' });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.details.map((d: any) => d.path), ['/']);
    r = await call(base, 'POST', '/v2/apps', { id: 5, cmd: 'x' });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json, { message: 'Invalid JSON', details: [{ path: '/id', errors: ['error.expected.jsstring'] }] });
    r = await call(base, 'POST', '/v2/apps', { id: '/v', cmd: 'x', container: { type: 'DOCKER', docker: { image: 'i' }, volumes: [{ containerPath: '/a', hostPath: '/b', mode: 'RX' }] } });
    assert.equal(r.status, 422);
    assert.equal(r.json.details[0].path, '/container/volumes(0)/mode');
    r = await call(base, 'POST', '/v2/apps', { id: '/x/restart', cmd: 'x' });
    assert.equal(r.status, 422);
    r = await call(base, 'POST', '/v2/apps', '{"id": ');
    assert.equal(r.status, 400);
    assert.equal(r.json.message, 'Invalid JSON');
    assert.equal(typeof r.json.details, 'string');
    r = await call(base, 'POST', '/v2/apps', '');
    assert.equal(r.status, 400);
    assert.equal(r.json.message, 'Please specify data in JSON format');
    assert.equal((await call(base, 'POST', '/v2/apps', { id: '/dup', cmd: 'x' })).status, 201);
    r = await call(base, 'POST', '/v2/apps', { id: '/dup', cmd: 'x' });
    assert.equal(r.status, 409);
    assert.equal(r.json.message, 'An app with id [/dup] already exists.');
    r = await call(base, 'GET', '/v2/apps/nope');
    assert.deepEqual([r.status, r.json.message], [404, "App '/nope' does not exist"]);
    r = await call(base, 'DELETE', '/v2/apps/nope');
    assert.equal(r.status, 404);
    r = await call(base, 'GET', '/v2/groups/nope');
    assert.deepEqual([r.status, r.json], [404, { message: "Group '/nope' does not exist", details: [] }]);
    r = await call(base, 'PUT', '/v2/apps/dup', { version: '2020-01-01T00:00:00.000Z', cmd: 'y' });
    assert.equal(r.status, 422);
    r = await call(base, 'PUT', '/v2/pods/p1', { id: '/p2', containers: [{ name: 'c', resources: { cpus: 0.1, mem: 32 } }] });
    assert.equal(r.status, 400);
    r = await call(base, 'POST', '/v2/pods', { id: '/p3', containers: [] });
    assert.equal(r.status, 422);
    assert.equal(r.json.details[0].path, '/containers');
  });

  it('PUT updates (200) or creates (201); scaling keeps tasks, a config change replaces them', async () => {
    let r = await call(base, 'PUT', '/v2/apps/put/a', { cmd: 'x', instances: 2 });
    assert.equal(r.status, 201, r.text);
    const before = (await call(base, 'GET', '/v2/apps/put/a/tasks')).json.tasks.map((t: any) => t.id);
    r = await call(base, 'PUT', '/v2/apps/put/a', { instances: 3 });
    assert.equal(r.status, 200);
    assert.ok(r.json.version && r.json.deploymentId);
    const scaled = (await call(base, 'GET', '/v2/apps/put/a/tasks')).json.tasks.map((t: any) => t.id);
    assert.deepEqual(scaled.slice(0, 2), before);
    assert.equal(scaled.length, 3);
    await call(base, 'PUT', '/v2/apps/put/a', { labels: { 'istio.io/service-account': 'x' } });
    const restarted = (await call(base, 'GET', '/v2/apps/put/a')).json.app;
    assert.equal(restarted.tasks.length, 3);
    assert.ok(restarted.tasks.every((t: any) => !scaled.includes(t.id)));
    assert.equal(restarted.cmd, 'x'); // partialUpdate merged
  });

  it('filters /v2/apps by id, label selector and embeds tasks on request', async () => {
    await call(base, 'POST', '/v2/apps', { id: '/f/one', cmd: 'x', labels: { tier: 'web', team: 'a' } });
    await call(base, 'POST', '/v2/apps', { id: '/f/two', cmd: 'x', labels: { tier: 'db' } });
    let r = await call(base, 'GET', '/v2/apps?id=F/&label=tier==web');
    assert.deepEqual(r.json.apps.map((a: any) => a.id), ['/f/one']);
    assert.equal(r.json.apps[0].tasks, undefined);
    assert.equal(r.json.apps[0].tasksRunning, 1);
    r = await call(base, 'GET', '/v2/apps/?id=/f/&label=tier in (web, db),!team&embed=apps.tasks'.replace('!team', 'tier'));
    assert.deepEqual(r.json.apps.map((a: any) => a.id).sort(), ['/f/one', '/f/two']);
    assert.equal(r.json.apps[0].tasks.length, 1);
    r = await call(base, 'GET', '/v2/apps/f/*');
    assert.equal(r.json['*'].length, 2);
  });

  it('/ping, /v2/info, /v2/leader and the X-Marathon-Leader header', async () => {
    const ping = await call(base, 'GET', '/ping');
    assert.equal(ping.text, 'pong');
    assert.match(ping.headers.get('content-type')!, /^text\/plain/);
    assert.equal(ping.headers.get('x-marathon-leader'), base);
    const info = await call(base, 'GET', '/v2/info');
    assert.equal(info.json.leader, base.replace('http://', ''));
    assert.equal((await call(base, 'GET', '/v2/leader')).json.leader, base.replace('http://', ''));
  });
});

describe('marathon simulator: group dumps', () => {
  for (const file of fs.readdirSync(path.join(sharedMarathonDir, 'group-dumps'))) {
    it(`serves ${file} back as seeded`, async () => {
      const dump = readJson('group-dumps', file) as { id: string; apps: Array<Record<string, unknown>> };
      const sim = new MarathonSimulator();
      try {
        assert.deepEqual(sim.seed(dump), { apps: dump.apps.length, pods: 0 });
        const base = await sim.listen(0);
        const r = await call(base, 'GET', `/v2/groups${dump.id}`);
        assert.equal(r.status, 200);
        assert.equal(r.json.id, dump.id);
        assert.equal(r.json.apps.length, dump.apps.length);
        const served = new Map<string, any>(r.json.apps.map((a: any) => [a.id, a]));
        for (const app of dump.apps) {
          const got = served.get(app.id as string);
          assert.ok(got, `${String(app.id)} missing`);
          for (const [k, v] of Object.entries(app)) assert.deepEqual(got[k], v, `${String(app.id)} field ${k}`);
        }
        const root = await call(base, 'GET', '/v2/groups?embed=group.groups');
        assert.equal(root.json.apps, undefined); // an embed replaces the defaults
        assert.deepEqual(root.json.groups.map((g: any) => g.id), [dump.id]);
      } finally {
        await sim.close();
      }
    });
  }
});

describe('marathon simulator: event bus', () => {
  let sim: MarathonSimulator;
  let base: string;
  before(async () => {
    sim = new MarathonSimulator({ heartbeatMs: 50, agents: ['h1', 'h2'] });
    base = await sim.listen(0);
  });
  after(() => sim.close());

  it('needs Accept: text/event-stream exactly (405 otherwise)', async () => {
    for (const accept of ['text/event-stream, */*', '*/*', 'application/json']) {
      const s = await openStream(base, '', accept);
      assert.equal(s.res.statusCode, 405, accept);
      s.close();
    }
  });

  it('frames events with CRLF, attaches first, heartbeats, and reports each change', async () => {
    const s = await openStream(base);
    assert.equal(s.res.statusCode, 200);
    assert.equal(s.res.headers['content-type'], 'text/event-stream;charset=utf-8');
    assert.equal(s.res.headers.connection, 'close');
    await waitFor('a heartbeat', () => s.bytes().includes('\r\n\r\n\r\n'), 3000);
    assert.match(s.bytes(), /^event: event_stream_attached\r\ndata: \{"remoteAddress":"[^"]+","eventType":"event_stream_attached","timestamp":"[^"]+"\}\r\n\r\n/);
    assert.equal((await call(base, 'POST', '/v2/apps', { id: '/ev/a', cmd: 'x', instances: 2 })).status, 201);
    assert.equal((await call(base, 'POST', '/v2/pods', { id: '/ev/p', containers: [{ name: 'c', resources: { cpus: 0.1, mem: 32 } }] })).status, 201);
    await call(base, 'DELETE', '/v2/apps/ev/a');
    await call(base, 'DELETE', '/v2/pods/ev/p');
    await waitFor('two app_terminated_event', () => s.bytes().split('event: app_terminated_event').length === 3, 3000);
    s.close();
    const frame = /event: (\S+)\r\ndata: ([^\r\n]*)\r\n\r\n/g;
    const events = [...s.bytes().matchAll(frame)].map((m) => ({ type: m[1], data: JSON.parse(m[2]) }));
    // nothing but whole events and bare CRLF heartbeats
    assert.match(s.bytes().replace(frame, ''), /^(\r\n)*$/);
    assert.ok(!s.bytes().replace(/\r\n/g, '').includes('\n'), 'only CRLF line ends');
    const of = (t: string) => events.filter((e) => e.type === t);
    assert.equal(of('api_post_event').length, 1);
    assert.equal(of('api_post_event')[0].data.appDefinition.id, '/ev/a');
    assert.equal(of('api_post_event')[0].data.uri, '/v2/apps');
    assert.deepEqual(of('pod_created_event').map((e) => e.data.uri), ['/v2/pods/ev/p']);
    assert.deepEqual(of('pod_deleted_event').map((e) => e.data.uri), ['/v2/pods/ev/p']);
    assert.equal(of('pod_created_event')[0].data.id, undefined);
    assert.ok(of('group_change_success').every((e) => e.data.groupId === '/ev'));
    const running = of('status_update_event').filter((e) => e.data.appId === '/ev/a' && e.data.taskStatus === 'TASK_RUNNING');
    assert.deepEqual(running.map((e) => e.data.host).sort(), ['h1', 'h2']);
    assert.equal(of('status_update_event').filter((e) => e.data.appId === '/ev/a' && e.data.taskStatus === 'TASK_KILLED').length, 2);
    assert.ok(of('instance_changed_event').some((e) => e.data.runSpecId === '/ev/p' && e.data.condition === 'Running'));
    assert.deepEqual(of('app_terminated_event').map((e) => e.data.appId), ['/ev/a', '/ev/p']);
    assert.ok(of('deployment_success').some((e) => e.data.plan.steps[0].actions[0].app === '/ev/a'));
    assert.ok(of('deployment_info').length >= 4);
    for (const e of events) assert.equal(e.data.eventType, e.type);
  });

  it('filters by event_type', async () => {
    const s = await openStream(base, '?event_type=app_terminated_event&event_type=api_post_event');
    await call(base, 'POST', '/v2/apps', { id: '/flt/a', cmd: 'x' });
    await call(base, 'DELETE', '/v2/apps/flt/a');
    await waitFor('app_terminated_event', () => s.bytes().includes('app_terminated_event'), 3000);
    s.close();
    const types = [...s.bytes().matchAll(/event: (\S+)\r\n/g)].map((m) => m[1]);
    assert.deepEqual(types, ['api_post_event', 'app_terminated_event']);
  });
});

describe('marathon simulator: auth and standby', () => {
  it('401 with WWW-Authenticate basic realm="Mesosphere" on everything when credentials are set', async () => {
    const sim = new MarathonSimulator({ credentials: 'alice:s3cret' });
    const base = await sim.listen(0);
    try {
      for (const p of ['/ping', '/v2/apps', '/v2/events']) {
        const r = await call(base, 'GET', p, undefined, { Accept: 'text/event-stream' });
        assert.equal(r.status, 401, p);
        assert.equal(r.headers.get('www-authenticate'), 'basic realm="Mesosphere"');
      }
      const wrong = await call(base, 'GET', '/ping', undefined, { Authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` });
      assert.equal(wrong.status, 401);
      const right = await call(base, 'GET', '/ping', undefined, { Authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` });
      assert.equal(right.text, 'pong');
    } finally {
      await sim.close();
    }
  });

  it('a standby redirects /v2/events to the leader, proxies the rest with X-Marathon-Via, 502 without a leader', async () => {
    const leader = new MarathonSimulator();
    const leaderUrl = await leader.listen(0);
    const standby = new MarathonSimulator({ standbyOf: leaderUrl });
    const standbyUrl = await standby.listen(0);
    try {
      const ev = await call(standbyUrl, 'GET', '/v2/events?event_type=api_post_event', undefined, { Accept: 'text/event-stream' });
      assert.equal(ev.status, 302);
      assert.equal(ev.headers.get('location'), `${leaderUrl}/v2/events?event_type=api_post_event`);
      const created = await call(standbyUrl, 'POST', '/v2/apps', { id: '/via/standby', cmd: 'x' });
      assert.equal(created.status, 201);
      assert.equal(created.headers.get('x-marathon-via'), `1.1 ${standbyUrl.replace('http://', '')}`);
      assert.equal(created.headers.get('x-marathon-leader'), leaderUrl);
      assert.ok(leader.state.apps.has('/via/standby'));
      await leader.close();
      const down = await call(standbyUrl, 'GET', '/v2/apps');
      assert.equal(down.status, 502);
    } finally {
      await standby.close();
      await leader.close();
    }
  });
});

describe('marathon-sim command', () => {
  it('runs as a process, seeded from a dump, until SIGTERM', async () => {
    const proc = await startMarathonSimProcess(['--seed', path.join(sharedMarathonDir, 'group-dumps', '155_100.json'), '--agents', 'n1,n2', '--credentials', 'u:p']);
    try {
      const auth = { Authorization: `Basic ${Buffer.from('u:p').toString('base64')}` };
      const r = await call(proc.url, 'GET', '/v2/apps', undefined, auth);
      assert.equal(r.json.apps.length, 100);
      const created = await call(proc.url, 'POST', '/v2/apps', { id: '/cli/a', cmd: 'x', instances: 3 }, auth);
      assert.deepEqual(created.status, 201);
      const tasks = (await call(proc.url, 'GET', '/v2/apps/cli/a/tasks', undefined, auth)).json.tasks;
      assert.deepEqual(tasks.map((t: any) => t.host), ['n1', 'n2', 'n1']);
      assert.match(proc.stderr(), /seeded 100 apps/);
    } finally {
      assert.equal(await proc.stop(), 0);
    }
  });
});

describe('marathon simulator: health checks', () => {
  let sim: MarathonSimulator;
  let base: string;
  before(async () => {
    sim = new MarathonSimulator({ healthCheckDelayMs: null, agents: ['h1'] });
    base = await sim.listen(0);
  });
  after(() => sim.close());

  const app = async (id: string) => (await call(base, 'GET', `/v2/apps${id}`)).json.app;

  it('tasks carry no results until checked; PUT /_sim/tasks/<id>/health sets them, with counts and events', async () => {
    const s = await openStream(base, '?event_type=health_status_changed_event&event_type=failed_health_check_event');
    const hc = { protocol: 'HTTP', path: '/', portIndex: 0 };
    assert.equal((await call(base, 'POST', '/v2/apps', { id: '/hc/web', cmd: 'x', instances: 2, healthChecks: [hc, { protocol: 'TCP', portIndex: 0 }] })).status, 201);
    let info = await app('/hc/web');
    assert.deepEqual(info.tasks.map((t: any) => t.healthCheckResults), [[], []]); // not checked yet
    assert.deepEqual([info.tasksHealthy, info.tasksUnhealthy], [0, 0]);
    const [first, second] = info.tasks.map((t: any) => t.id as string);

    let r = await call(base, 'PUT', `/_sim/tasks/${first}/health`, { alive: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, first);
    const instanceId = first.replace(/\._app\.1$/, '');
    assert.deepEqual(r.json.healthCheckResults.map((h: any) => [h.alive, h.consecutiveFailures, h.instanceId]), [[true, 0, instanceId], [true, 0, instanceId]]); // one result per check
    // by instance id too; a failing check
    r = await call(base, 'PUT', `/_sim/tasks/${second.replace(/\._app\.1$/, '')}/health`, { alive: false, cause: 'connection refused' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.healthCheckResults.map((h: any) => [h.alive, h.consecutiveFailures, h.lastFailureCause]), [[false, 1, 'connection refused'], [false, 1, 'connection refused']]);
    info = await app('/hc/web');
    assert.deepEqual([info.tasksHealthy, info.tasksUnhealthy], [1, 1]);
    const listed = (await call(base, 'GET', '/v2/apps?embed=apps.tasks')).json.apps.find((a: any) => a.id === '/hc/web');
    assert.deepEqual([listed.tasksHealthy, listed.tasksUnhealthy, listed.tasks.filter((t: any) => t.healthCheckResults.length).length], [1, 1, 2]);
    // the same state again: no health_status_changed_event, but a failing check is reported each time
    await call(base, 'PUT', `/_sim/tasks/${second}/health`, { alive: false });
    await waitFor('two failed checks', () => s.bytes().split('event: failed_health_check_event').length === 3, 3000);
    s.close();
    const events = [...s.bytes().matchAll(/event: (\S+)\r\ndata: ([^\r\n]*)\r\n/g)].map((m) => ({ type: m[1], data: JSON.parse(m[2]) }));
    assert.deepEqual(
      events.filter((e) => e.type === 'health_status_changed_event').map((e) => [e.data.appId, e.data.instanceId, e.data.alive, typeof e.data.version]),
      [['/hc/web', instanceId, true, 'string'], ['/hc/web', second.replace(/\._app\.1$/, ''), false, 'string']],
    );
    const failed = events.filter((e) => e.type === 'failed_health_check_event');
    assert.deepEqual(failed.map((e) => [e.data.appId, e.data.taskId, e.data.healthCheck.protocol]), [['/hc/web', second, 'HTTP'], ['/hc/web', second, 'HTTP']]);
  });

  it('answers 404 for an unknown task, 409 when the app has no health checks, 422 for a bad body, 405 for GET', async () => {
    await call(base, 'POST', '/v2/apps', { id: '/hc/plain', cmd: 'x' });
    const task = (await app('/hc/plain')).tasks[0].id;
    assert.deepEqual([(await call(base, 'PUT', '/_sim/tasks/nope/health', { alive: true })).status], [404]);
    const r = await call(base, 'PUT', `/_sim/tasks/${task}/health`, { alive: true });
    assert.equal(r.status, 409);
    assert.match(r.json.message, /has no healthChecks/);
    assert.deepEqual((await app('/hc/plain')).tasks[0].healthCheckResults, []);
    const bad = await call(base, 'PUT', `/_sim/tasks/${task}/health`, { alive: 'yes' });
    assert.deepEqual([bad.status, bad.json.details[0].path], [422, '/alive']);
    assert.equal((await call(base, 'GET', `/_sim/tasks/${task}/health`)).status, 405);
  });

  it('pod instances with a container health check are DEGRADED until it passes, then STABLE', async () => {
    const def = readJson('system-pods', 'ports-pod.json');
    assert.equal((await call(base, 'POST', '/v2/pods', { ...def, id: '/hc/pod' })).status, 201);
    let status = (await call(base, 'GET', '/v2/pods/hc/pod::status')).json;
    const inst = status.instances[0];
    assert.equal(inst.status, 'DEGRADED');
    assert.deepEqual(inst.containers[0].conditions.map((c: any) => [c.name, c.value, c.reason]), [['healthy', 'false', 'health-unreported-by-mesos']]);
    const r = await call(base, 'PUT', `/_sim/tasks/${inst.containers[0].containerId}/health`, { alive: true });
    assert.equal(r.status, 200, r.text);
    status = (await call(base, 'GET', '/v2/pods/hc/pod::status')).json;
    assert.deepEqual([status.status, status.instances[0].status], ['STABLE', 'STABLE']);
    assert.deepEqual(status.instances[0].containers[0].endpoints.map((e: any) => [e.name, typeof e.allocatedHostPort, e.healthy]), [['httpendpoint', 'number', true]]);
  });

  it('passes the first check by itself after the configured delay', async () => {
    const quick = new MarathonSimulator({ healthCheckDelayMs: 20 });
    try {
      quick.state.createApp({ id: '/hc/auto', cmd: 'x', healthChecks: [{ protocol: 'HTTP' }] });
      const task = () => quick.state.taskJson(quick.state.apps.get('/hc/auto')!.tasks[0]);
      assert.deepEqual(task().healthCheckResults, []);
      await waitFor('the first check', () => (task().healthCheckResults as unknown[]).length === 1, 3000);
      assert.equal((task().healthCheckResults as Array<{ alive: boolean }>)[0].alive, true);
    } finally {
      await quick.close();
    }
  });
});

describe('marathon simulator: container network addresses', () => {
  const scenario = async (sim: MarathonSimulator) => {
    sim.state.createApp({ id: '/net/overlay', cmd: 'x', instances: 2, networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS', portMappings: [{ containerPort: 8080, name: 'http' }, { containerPort: 9090, hostPort: 0, name: 'grpc' }] } });
    sim.state.createApp({ id: '/net/bridge', cmd: 'x', networks: [{ mode: 'container/bridge' }], container: { type: 'DOCKER', docker: { image: 'nginx' }, portMappings: [{ containerPort: 80 }] } });
    sim.state.createApp({ id: '/net/host', cmd: 'x' });
    sim.state.createPod(readJson('system-pods', 'container-net-pod.json'));
    sim.state.createPod(readJson('system-pods', 'container-bridge-pod.json'));
    const base = await sim.listen(0);
    const apps = new Map<string, any>(((await call(base, 'GET', '/v2/apps?embed=apps.tasks')).json.apps as any[]).map((a) => [a.id, a]));
    const pods = new Map<string, any>(((await call(base, 'GET', '/v2/pods/::status')).json as any[]).map((p) => [p.id, p]));
    return { apps, pods };
  };

  it('gives tasks and pod instances on container networks addresses from the CIDR, deterministically', async () => {
    const sims = [new MarathonSimulator({ containerNetworkCidr: '127.0.1.0/24', agents: ['h1', 'h2'] }), new MarathonSimulator({ containerNetworkCidr: '127.0.1.0/24', agents: ['h1', 'h2'] })];
    try {
      const [one, two] = [await scenario(sims[0]), await scenario(sims[1])];
      const overlay = one.apps.get('/net/overlay');
      assert.deepEqual(overlay.tasks.map((t: any) => t.ipAddresses), [[{ ipAddress: '127.0.1.1', protocol: 'IPv4' }], [{ ipAddress: '127.0.1.2', protocol: 'IPv4' }]]);
      // only the mapping that asks for a host port has one
      assert.deepEqual(overlay.container.portMappings.map((m: any) => m.hostPort), [undefined, 0]);
      assert.deepEqual(overlay.tasks.map((t: any) => t.ports.length), [1, 1]);
      // bridge and host networking: the agent's address, a host port per mapping / definition
      for (const id of ['/net/bridge', '/net/host']) {
        const t = one.apps.get(id).tasks[0];
        assert.match(t.ipAddresses[0].ipAddress, /^10\.0\.0\.\d$/, id);
        assert.equal(t.ports.length, 1, id);
      }
      const netPod = one.pods.get('/container-net-pod').instances[0];
      assert.deepEqual(netPod.networks, [{ addresses: ['127.0.1.3'] }]);
      assert.deepEqual(netPod.containers[0].endpoints, [{ name: 'web' }]); // no hostPort asked: none allocated
      const bridgePod = one.pods.get('/container-bridge-pod').instances[0];
      assert.match(bridgePod.networks[0].addresses[0], /^10\.0\.0\.\d$/);
      assert.ok(bridgePod.containers[0].endpoints[0].allocatedHostPort >= 31000);
      // the same requests on the same seed: the same ids and addresses
      const placement = (r: typeof one) => [...r.apps.values()].map((a) => a.tasks.map((t: any) => [t.id, t.host, t.ipAddresses, t.ports]));
      assert.deepEqual(placement(two), placement(one));
      assert.deepEqual(two.pods.get('/container-net-pod').instances[0].networks, netPod.networks);
    } finally {
      for (const s of sims) await s.close();
    }
  });

  it('hands a freed address out again only after the range wraps', () => {
    const pool = new IpPool('127.0.1.0/30');
    assert.deepEqual([pool.allocate(), pool.allocate()], ['127.0.1.1', '127.0.1.2']);
    pool.release('127.0.1.1');
    assert.equal(pool.allocate(), '127.0.1.1');
    assert.throws(() => pool.allocate(), /127\.0\.1\.0\/30 has no free address/);
    assert.throws(() => new IpPool('127.0.1/24'), /not an IPv4 CIDR/);
    assert.deepEqual(parseCidr('9.0.0.0/8'), { first: (9 << 24) + 1, last: (9 << 24) + 2 ** 24 - 2 });
  });

  it('marathon-sim --container-network-cidr and --health-check-delay manual, as a process', async () => {
    const proc = await startMarathonSimProcess(['--container-network-cidr', '127.0.1.0/24', '--health-check-delay', 'manual']);
    try {
      await call(proc.url, 'POST', '/v2/apps', { id: '/p/web', cmd: 'x', networks: [{ mode: 'container' }], container: { type: 'MESOS', portMappings: [{ containerPort: 80 }] }, healthChecks: [{ protocol: 'MESOS_HTTP' }] });
      const [task] = (await call(proc.url, 'GET', '/v2/apps/p/web/tasks')).json.tasks;
      assert.deepEqual([task.ipAddresses[0].ipAddress, task.healthCheckResults], ['127.0.1.1', []]);
      const r = await call(proc.url, 'PUT', `/_sim/tasks/${task.id}/health`, { alive: false });
      assert.equal(r.json.healthCheckResults[0].alive, false);
    } finally {
      assert.equal(await proc.stop(), 0);
    }
  });
});
