import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, test } from 'node:test';
import { flattenGroup, MarathonParseError, parseApp, parseAppList, parseGroup, parseMarathonEvent, parsePod, parsePodList, parseTask, parseTaskList, type Malformed } from '../../src/marathon/model';
import { sharedMarathonDir } from '../helpers/marathon-sim';

const example = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, 'examples', name), 'utf8'));

describe('parsing Marathon examples', () => {
  it('app.json: legacy docker.portMappings and ipAddress, labels', () => {
    const app = parseApp(example('app.json'));
    assert.equal(app.id, '/foo');
    assert.equal(app.instances, 2);
    assert.deepEqual(app.labels, { owner: 'zeus', note: 'Away from olympus' });
    assert.deepEqual(app.networks, [{ mode: 'container' }]); // ipAddress = IP-per-task
    assert.deepEqual(app.ports, [{ name: 'http', containerPort: 80, hostPort: 0, servicePort: 10019, protocol: 'tcp' }]);
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
    const tasks = parseTaskList(example('tasks.json'), malformed);
    assert.deepEqual(tasks.map((x) => x.host), ['srv4.example.com', 'srv2.example.com']);
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
