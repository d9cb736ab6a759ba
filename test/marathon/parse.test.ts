import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, test } from 'node:test';
import { flattenGroup, MarathonParseError, parseApp, parseAppList, parseGroup, parseMarathonEvent, parsePod, parsePodList, parseTask, parseTaskList, type Malformed } from '../../src/marathon/model';
import { sharedMarathonDir } from '../helpers/marathon-sim';

const example = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, 'examples', name), 'utf8'));
const systemDef = (dir: string, name: string): unknown => JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, dir, name), 'utf8'));

describe('parsing Marathon examples', () => {
  it('app.json: legacy docker.portMappings and ipAddress, labels', () => {
    const app = parseApp(example('app.json'));
    assert.equal(app.id, '/foo');
    assert.equal(app.instances, 2);
    assert.deepEqual(app.labels, { owner: 'zeus', note: 'Away from olympus' });
    assert.deepEqual(app.networks, [{ mode: 'container' }]); // ipAddress = IP-per-task
    assert.deepEqual(app.ports, [{ name: 'http', containerPort: 80, hostPort: 0, servicePort: 10019, protocol: 'tcp', labels: { vip: '192.168.0.1:80' } }]);
    assert.equal(app.hasHealthChecks, true);
  });

  it('app_list.json: pre-1.5 `ports`, no container, deployments', () => {
    const malformed: Malformed[] = [];
    const apps = parseAppList(example('app_list.json'), malformed);
    assert.deepEqual(malformed, []);
    assert.equal(apps.length, 1);
    assert.deepEqual(apps[0].networks, [{ mode: 'host' }]);
    assert.deepEqual(apps[0].ports.map((p) => p.hostPort), [10013, 10015]);
    assert.deepEqual(apps[0].tasks, []);
  });

  it('group.json: nested groups, docker.network HOST', () => {
    const malformed: Malformed[] = [];
    const group = parseGroup(example('group.json'), malformed);
    assert.deepEqual(malformed, []);
    const { apps, pods } = flattenGroup(group);
    assert.ok(apps.length >= 3, `apps: ${apps.length}`);
    assert.equal(pods.length, 0);
    const oauth = apps.find((a) => a.id === '/tools/oauth-server')!;
    assert.deepEqual(oauth.networks, [{ mode: 'host' }]);
    assert.deepEqual(oauth.ports.map((p) => p.hostPort), [1980]);
  });

  it('tasks: app_task.json, app_tasks.json, tasks.json', () => {
    const t = parseTask((example('app_task.json') as { task: unknown }).task);
    assert.deepEqual([t.appId, t.host, t.state, t.slaveId], ['/minecraft/survival-world', 'srv7.hw.ca1.mesosphere.com', 'TASK_STAGING', 'agent0']);
    const malformed: Malformed[] = [];
    assert.equal(parseTaskList(example('app_tasks.json'), malformed).length, 1);
    const [staging] = parseTaskList(example('app_tasks.json'), malformed);
    assert.deepEqual(staging.ports, [31756]);
    const tasks = parseTaskList(example('tasks.json'), malformed);
    assert.deepEqual(tasks.map((x) => x.host), ['srv4.example.com', 'srv2.example.com']);
    assert.deepEqual(tasks.map((x) => x.ports), [[31292], [31721]]);
    // these examples predate ipAddresses and health results: both read as empty (not checked)
    assert.deepEqual(tasks.map((x) => [x.ipAddresses, x.healthCheckResults]), [[[], []], [[], []]]);
    assert.deepEqual(malformed, []);
  });

  it('pod.json: a definition (no instances) with labels and endpoints', () => {
    const pod = parsePod(example('pod.json'));
    assert.equal(pod.id, '/foo');
    assert.equal(pod.labels.owner, 'zeus');
    assert.deepEqual(pod.networks, [{ mode: 'container', name: 'my-network' }]);
    assert.deepEqual(pod.containers[0].endpoints[0], { name: 'httpendpoint', containerPort: 80, hostPort: 0, protocol: 'tcp' });
    assert.deepEqual(pod.podInstances, []);
  });

  it('system-apps: port names and numbers, network modes and names, whether there are health checks', () => {
    const app = (name: string) => parseApp(systemDef('system-apps', name));
    const localhost = app('pinger-localhost-app.json');
    assert.deepEqual([localhost.networks, localhost.ports], [[{ mode: 'host' }], [{ name: 'api', hostPort: 7777, protocol: 'tcp' }]]);
    const bridge = app('pinger-bridge-app.json');
    assert.deepEqual([bridge.networks, bridge.ports], [[{ mode: 'container/bridge' }], [{ name: 'http', containerPort: 80, hostPort: 7777, protocol: 'tcp' }]]);
    const overlay = app('pinger-container-app.json'); // legacy ipAddress with discovery ports
    assert.deepEqual([overlay.networks, overlay.ports], [[{ mode: 'container', name: 'dcos' }], [{ name: 'my-port', containerPort: 7777, protocol: 'tcp' }]]);
    const ipv6 = app('ipv6-healthcheck.json');
    assert.deepEqual([ipv6.networks, ipv6.ports, ipv6.hasHealthChecks], [[{ mode: 'container', name: 'mesos-docker-ipv6-test' }], [{ containerPort: 8080, hostPort: 0, protocol: 'tcp' }], true]);
    for (const file of fs.readdirSync(path.join(sharedMarathonDir, 'system-apps'))) {
      const def = systemDef('system-apps', file) as { healthChecks?: unknown[] };
      assert.equal(parseApp(def).hasHealthChecks, (def.healthChecks ?? []).length > 0, file);
    }
  });

  it('system-pods: container endpoints (name, containerPort, hostPort, protocols) and network modes', () => {
    const net = parsePod(systemDef('system-pods', 'container-net-pod.json'));
    assert.deepEqual(net.networks, [{ mode: 'container' }]);
    assert.deepEqual(net.containers[0].endpoints, [{ name: 'web', containerPort: 80, protocol: 'http' }]);
    const bridge = parsePod(systemDef('system-pods', 'container-bridge-pod.json'));
    assert.deepEqual(bridge.networks, [{ mode: 'container/bridge' }]);
    assert.deepEqual(bridge.containers[0].endpoints, [{ name: 'web', containerPort: 80, hostPort: 0, protocol: 'tcp' }]);
    const ports = parsePod(systemDef('system-pods', 'ports-pod.json'));
    assert.deepEqual(ports.networks, [{ mode: 'host' }]);
    assert.deepEqual(ports.containers.map((c) => c.endpoints), [[{ name: 'httpendpoint', hostPort: 0, protocol: 'tcp' }], [{ name: 'httpendpoint2', hostPort: 0, protocol: 'http' }]]);
  });

  it('task health results: 1.4+ (instanceId), before 1.4 (taskId), not checked yet (empty)', () => {
    // the shapes of Marathon's REST docs (tasks of an app with an HTTP health check)
    const task = (healthCheckResults: unknown) => parseTask({ id: 'web.instance-1._app.1', appId: '/web', host: 'h', state: 'TASK_RUNNING', ports: [31000], ipAddresses: [{ ipAddress: '9.0.0.7', protocol: 'IPv4' }, { ipAddress: 'fd00::7', protocol: 'IPv6' }], healthCheckResults });
    const current = task([{ alive: true, consecutiveFailures: 0, firstSuccess: '2017-01-01T00:00:00.000Z', lastFailure: null, lastSuccess: '2017-01-01T00:01:00.000Z', lastFailureCause: null, instanceId: 'web.marathon-1' }]);
    assert.deepEqual(current.healthCheckResults, [{ alive: true, instanceId: 'web.marathon-1' }]);
    assert.deepEqual(current.ipAddresses, [{ ipAddress: '9.0.0.7', protocol: 'IPv4' }, { ipAddress: 'fd00::7', protocol: 'IPv6' }]);
    const old = task([{ alive: false, consecutiveFailures: 3, firstSuccess: null, lastFailure: '2015-01-01T00:00:00.000Z', lastSuccess: null, taskId: 'web.eb76c51f' }]);
    assert.deepEqual(old.healthCheckResults, [{ alive: false, instanceId: 'web.eb76c51f' }]);
    assert.deepEqual(task([]).healthCheckResults, []);
    assert.throws(() => task([{ consecutiveFailures: 0 }]), (e: Error & { path?: string }) => e.path === '/healthCheckResults(0)/alive');
  });

  it('PodStatus instances: networks with addresses, container endpoints with allocated host ports', () => {
    const status = {
      id: '/shop/cart',
      spec: { id: '/shop/cart', containers: [{ name: 'app', endpoints: [{ name: 'http-api', containerPort: 8080, hostPort: 0, protocol: ['tcp'] }, { name: 'admin', containerPort: 9000, protocol: ['tcp'] }] }], networks: [{ mode: 'container', name: 'dcos' }] },
      status: 'STABLE',
      instances: [
        {
          id: 'shop_cart.instance-1',
          status: 'DEGRADED',
          agentHostname: 'agent-1',
          agentId: 'a-S0',
          networks: [{ name: 'dcos', addresses: ['9.0.1.2'] }],
          containers: [{ name: 'app', status: 'TASK_RUNNING', conditions: [{ name: 'healthy', value: 'false' }], endpoints: [{ name: 'http-api', allocatedHostPort: 31005 }, { name: 'admin' }] }],
        },
      ],
    };
    const pod = parsePod(status);
    assert.deepEqual(pod.networks, [{ mode: 'container', name: 'dcos' }]);
    assert.deepEqual(pod.podInstances, [
      {
        id: 'shop_cart.instance-1',
        status: 'DEGRADED',
        agentHostname: 'agent-1',
        agentId: 'a-S0',
        networks: [{ name: 'dcos', addresses: ['9.0.1.2'] }],
        containers: [{ name: 'app', status: 'TASK_RUNNING', endpoints: [{ name: 'http-api', allocatedHostPort: 31005 }, { name: 'admin' }] }],
      },
    ]);
    const malformed: Malformed[] = [];
    const bad = structuredClone(status);
    (bad.instances[0].networks[0] as { addresses: unknown[] }).addresses = [7];
    assert.deepEqual(parsePodList([bad, status], malformed).length, 1);
    assert.deepEqual(malformed.map((m) => m.path), ['(0)/instances(0)/networks(0)/addresses(0)']);
  });

  it('every other example parses as what it is', () => {
    for (const name of ['apps_create.json', 'apps_patch.json']) {
      for (const a of example(name) as unknown[]) assert.ok(parseApp(a).id.startsWith('/test/'));
    }
    assert.equal(parseApp(example('app_patch.json')).instances, 2);
  });
});

describe('malformed payloads', () => {
  it('skips a malformed app or pod, naming its JSON path, and keeps the rest', () => {
    const malformed: Malformed[] = [];
    const apps = parseAppList(
      {
        apps: [
          { id: '/ok/a', cmd: 'x', tasks: [{ id: 't1', host: 'h1', state: 'TASK_RUNNING' }] },
          { id: '/bad/labels', labels: { owner: 5 } },
          { cmd: 'no id' },
          { id: '/bad/task', tasks: [{ id: 't', state: 'TASK_RUNNING' }] },
          'not an object',
          { id: '/ok/b', networks: [{ mode: 'container/bridge' }], container: { portMappings: [{ containerPort: 8080 }] } },
        ],
      },
      malformed,
    );
    assert.deepEqual(apps.map((a) => a.id), ['/ok/a', '/ok/b']);
    assert.equal(apps[0].tasks[0].appId, '/ok/a');
    assert.deepEqual(
      malformed.map((m) => [m.path, m.reason]),
      [
        ['/apps(1)/labels/owner', 'expected a string'],
        ['/apps(2)/id', 'expected a string'],
        ['/apps(3)/tasks(0)/host', 'expected a string'],
        ['/apps(4)', 'expected an object'],
      ],
    );
    assert.equal(malformed[0].id, '/bad/labels');

    const pm: Malformed[] = [];
    const pods = parsePodList([{ id: '/p', spec: { id: '/p', containers: [] }, instances: [{ id: 'i', agentHostname: 7 }] }, { id: '/q', spec: { id: '/q' }, instances: [] }], pm);
    assert.deepEqual(pods.map((p) => p.id), ['/q']);
    assert.deepEqual(pm.map((m) => m.path), ['(0)/instances(0)/agentHostname']);
  });
});

test('event payloads are parsed at the boundary: a pod event names its pod by URI, a hostile URI costs linear time', () => {
  assert.deepEqual(parseMarathonEvent('pod_updated_event', { uri: '/service/marathon/v2/pods/prod/web::status' }), { type: 'pod_updated_event', podId: '/prod/web' });
  assert.deepEqual(parseMarathonEvent('pod_deleted_event', { uri: '/v2/pods/prod/web/' }), { type: 'pod_deleted_event', podId: '/prod/web' });
  // With /::.*$/ this took minutes (quadratic in the '::' count); found by the property tests.
  assert.deepEqual(parseMarathonEvent('pod_created_event', { uri: `/v2/pods/x${'::'.repeat(500_000)}\n` }), { type: 'pod_created_event', podId: '/x' });
  assert.equal(parseMarathonEvent('event_stream_attached', { remoteAddress: '1.2.3.4' }), undefined);
  assert.throws(() => parseMarathonEvent('api_post_event', [1, 2]), MarathonParseError);
});
