import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/common/log';
import { MarathonClient } from '../../src/marathon/client';
import { parseAppList, parsePodList, type Malformed, type MarathonApp, type MarathonPod } from '../../src/marathon/model';
import { MarathonState } from '../../src/marathon/sim/state';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { MarathonView } from '../../src/marathon/view';
import { isInvalid, workloadOfApp, workloadOfPod, type Workload } from '../../src/marathon/workload';
import { mesosDnsName } from '../../src/mesh/mesos-dns';
import type { MeshSnapshot } from '../../src/mesh/model';
import { portProtocolOf } from '../../src/mesh/port-protocol';
import { meshServiceOf } from '../../src/mesh/service-of';
import { MeshServices } from '../../src/mesh/services';
import { parseUpstreams, UpstreamsLabelError } from '../../src/mesh/upstreams';
import { sharedMarathonDir } from '../helpers/marathon-sim';
import { waitFor } from '../helpers/wait';

const systemDef = (dir: string, name: string) => JSON.parse(fs.readFileSync(path.join(sharedMarathonDir, dir, name), 'utf8')) as Record<string, unknown>;

/** Marathon as the simulator answers it (GET /v2/apps?embed=apps.tasks, GET /v2/pods/::status), parsed by the client's parser. */
function marathon(setup: (m: MarathonState) => void): { apps: Map<string, MarathonApp>; pods: Map<string, MarathonPod>; state: MarathonState; reread: () => { apps: Map<string, MarathonApp>; pods: Map<string, MarathonPod> } } {
  const state = new MarathonState({ agents: ['agent-1', 'agent-2'], containerNetworkCidr: '127.0.1.0/24', healthCheckDelayMs: null });
  setup(state);
  const reread = () => {
    const malformed: Malformed[] = [];
    const apps = parseAppList(JSON.parse(`{"apps":[${[...state.apps.values()].map((r) => state.appInfoJson(r, { tasks: true })).join(',')}]}`), malformed);
    const pods = parsePodList(JSON.parse(JSON.stringify([...state.pods.values()].map((p) => state.podStatus(p)))), malformed);
    assert.deepEqual(malformed, []);
    return { apps: new Map(apps.map((a) => [a.id, a])), pods: new Map(pods.map((p) => [p.id, p])) };
  };
  return { ...reread(), state, reread };
}

function valid(w: ReturnType<typeof workloadOfApp>): Workload {
  assert.ok(!isInvalid(w), JSON.stringify(w));
  return w;
}
const appService = (app: MarathonApp | undefined) => meshServiceOf(valid(workloadOfApp(app!)));
const podService = (pod: MarathonPod | undefined) => meshServiceOf(valid(workloadOfPod(pod!)));

describe('Mesos-DNS names', () => {
  it('reverses the segments, joins them with -, adds marathon.mesos', () => {
    assert.equal(mesosDnsName('/prod/payments/api'), 'api-payments-prod.marathon.mesos');
    assert.equal(mesosDnsName('/api'), 'api.marathon.mesos');
    assert.equal(mesosDnsName('/prod/my.app'), 'my-app-prod.marathon.mesos');
  });
});

describe('port protocols from port names, as Istio reads them', () => {
  it('takes the prefix before the first dash, case-insensitively; the rest is tcp', () => {
    const cases: Array<[string | undefined, string]> = [
      ['http', 'http'], ['http-api', 'http'], ['HTTP-Api', 'http'], ['http2', 'http2'], ['http2-frontend', 'http2'],
      ['grpc', 'grpc'], ['grpc-users', 'grpc'], ['grpc-web', 'http'], ['grpc-web-ui', 'http'], ['tcp', 'tcp'], ['tcp-db', 'tcp'],
      ['https', 'tcp'], ['tls-passthrough', 'tcp'], ['mongo', 'tcp'], ['redis-cache', 'tcp'], ['httpendpoint', 'tcp'], ['web', 'tcp'],
      ['default', 'tcp'], ['', 'tcp'], [undefined, 'tcp'],
    ];
    assert.deepEqual(cases.map(([name]) => [name, portProtocolOf(name)]), cases);
  });
});

describe('the citadel.io/upstreams label', () => {
  it('reads "<service>:<local port>,..." with Marathon ids and DNS names', () => {
    assert.deepEqual(parseUpstreams('/prod/db:5432, api-payments-prod.marathon.mesos:8080,/prod/my.cache:6379'), [
      { service: '/prod/db', localPort: 5432 },
      { service: 'api-payments-prod.marathon.mesos', localPort: 8080 },
      { service: '/prod/my.cache', localPort: 6379 },
    ]);
    assert.deepEqual(parseUpstreams(''), []);
    assert.deepEqual(parseUpstreams('db:1'), [{ service: 'db', localPort: 1 }]);
    // A destination port (number or name) between the service and the local port.
    assert.deepEqual(parseUpstreams('/prod/db:5432:15432,api-payments-prod.marathon.mesos:grpc:15090'), [
      { service: '/prod/db:5432', localPort: 15432 },
      { service: 'api-payments-prod.marathon.mesos:grpc', localPort: 15090 },
    ]);
  });

  it('refuses anything else, saying which entry and why', () => {
    const cases: Array<[string, RegExp]> = [
      ['/prod/db', /entry 1 "\/prod\/db" has no ":<local port>"/],
      ['/prod/db:0', /local port "0" is not a port number/],
      ['/prod/db:65536', /local port "65536"/],
      ['/prod/db:080', /local port "080"/],
      ['/prod/db:+80', /local port "\+80"/],
      ['/Prod/db:80', /"\/Prod\/db" is neither a Marathon id/],
      ['/prod//db:80', /neither a Marathon id/],
      [':80', /"" is neither/],
      ['a b:80', /"a b" is neither/],
      ['a:1,,b:2', /entry 2 is empty/],
      ['a:1,', /entry 2 is empty/],
      ['a:1,b:1', /entry 2: local port 1 is used twice/],
      ['a:15001', /15001 is the sidecar's own/],
      ['a:Bad_Port:81', /"Bad_Port" is not a destination port/],
      ['/a/b:x.y:81', /"x\.y" is not a destination port/],
    ];
    for (const [value, reason] of cases) {
      assert.throws(() => parseUpstreams(value), (e: Error) => e instanceof UpstreamsLabelError && reason.test(e.message) && e.message.startsWith(`label citadel.io/upstreams "${value}": `), value);
    }
  });
});

describe('services from Marathon apps and pods', () => {
  it('host networking: the agent host and the task host ports; the service port is the definition port', () => {
    const m = marathon((s) => {
      s.createApp(systemDef('system-apps', 'pinger-localhost-app.json')); // requirePorts, port 7777 named api
      s.createApp({ id: '/h/dyn', cmd: 'x', instances: 2, portDefinitions: [{ port: 0, name: 'http-web' }, { port: 0 }] });
    });
    const { service, warnings } = appService(m.apps.get('/pinger-localhost-app'));
    assert.deepEqual(warnings, []);
    assert.deepEqual(service.ports, [{ name: 'api', port: 7777, protocol: 'tcp' }]);
    const task = m.apps.get('/pinger-localhost-app')!.tasks[0];
    assert.deepEqual(service.endpoints, [{ instanceId: task.id, host: task.host, address: task.host, ports: [7777], healthy: true }]);

    const dyn = appService(m.apps.get('/h/dyn')).service;
    const def = m.state.apps.get('/h/dyn')!.def as { portDefinitions: Array<{ port: number }> };
    assert.deepEqual(dyn.ports, [{ name: 'http-web', port: def.portDefinitions[0].port, protocol: 'http' }, { port: def.portDefinitions[1].port, protocol: 'tcp' }]);
    const tasks = [...m.apps.get('/h/dyn')!.tasks].sort((a, b) => (a.id < b.id ? -1 : 1));
    assert.deepEqual(dyn.endpoints.map((e) => [e.instanceId, e.address, e.ports]), tasks.map((t) => [t.id, t.host, t.ports]));
    assert.ok(dyn.endpoints.every((e) => e.ports.every((p) => p >= 31000)), 'host ports, not service ports');
    assert.deepEqual(dyn.endpoints.map((e) => e.host).sort(), ['agent-1', 'agent-2']);
  });

  it('bridge: the agent host and the host port mapped to the container port', () => {
    const m = marathon((s) => {
      s.createApp(systemDef('system-apps', 'pinger-bridge-app.json')); // legacy docker.network BRIDGE, 80 -> 7777, named http
      s.createApp(systemDef('system-apps', 'docker-http-server.json')); // 8080 -> any host port, unnamed
    });
    const pinger = appService(m.apps.get('/pinger-bridge-app')).service;
    assert.deepEqual(pinger.ports, [{ name: 'http', port: 80, protocol: 'http' }]);
    assert.deepEqual(pinger.endpoints.map((e) => [e.address, e.ports]), [[m.apps.get('/pinger-bridge-app')!.tasks[0].host, [7777]]]);
    const server = appService(m.apps.get('/docker-http-server')).service;
    const task = m.apps.get('/docker-http-server')!.tasks[0];
    assert.deepEqual([server.ports, server.endpoints.map((e) => [e.address, e.ports])], [[{ port: 8080, protocol: 'tcp' }], [[task.host, task.ports]]]);
  });

  it('container networks: the container IP and the container port, none until Marathon reports the IP', () => {
    const m = marathon((s) => {
      s.createApp(systemDef('system-apps', 'pinger-container-app.json')); // legacy ipAddress on network dcos, port my-port 7777
      s.createApp({ id: '/c/grpc', cmd: 'x', instances: 2, networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS', portMappings: [{ containerPort: 9090, name: 'grpc-users' }, { containerPort: 8080, hostPort: 0, name: 'http' }] } });
    });
    const pinger = appService(m.apps.get('/pinger-container-app')).service;
    assert.deepEqual(pinger.ports, [{ name: 'my-port', port: 7777, protocol: 'tcp' }]);
    assert.deepEqual(pinger.endpoints.map((e) => [e.address, e.ports]), [['127.0.1.1', [7777]]]);
    const grpc = appService(m.apps.get('/c/grpc')).service;
    assert.deepEqual(grpc.ports, [{ name: 'grpc-users', port: 9090, protocol: 'grpc' }, { name: 'http', port: 8080, protocol: 'http' }]);
    assert.deepEqual(grpc.endpoints.map((e) => [e.address, e.ports]).sort(), [['127.0.1.2', [9090, 8080]], ['127.0.1.3', [9090, 8080]]]);

    const app = m.apps.get('/c/grpc')!;
    const noIpYet: MarathonApp = { ...app, tasks: app.tasks.map((t, i) => (i === 0 ? { ...t, ipAddresses: [] } : t)) };
    assert.deepEqual(appService(noIpYet).service.endpoints.map((e) => e.instanceId), [app.tasks[1].id]);
  });

  it('pods: container network IPs, bridge host ports by endpoint name, host networking without fixed ports', () => {
    const m = marathon((s) => {
      s.createPod(systemDef('system-pods', 'container-net-pod.json'));
      s.createPod(systemDef('system-pods', 'container-bridge-pod.json'));
      s.createPod(systemDef('system-pods', 'ports-pod.json'));
      s.createPod({ id: '/p/fixed', containers: [{ name: 'a', resources: { cpus: 0.1, mem: 32 }, endpoints: [{ name: 'http-admin', hostPort: 9901 }, { name: 'dns', hostPort: 5353, protocol: ['udp'] }] }, { name: 'b', resources: { cpus: 0.1, mem: 32 }, endpoints: [{ name: 'grpc', hostPort: 9090, protocol: ['tcp'] }] }] });
    });
    const net = podService(m.pods.get('/container-net-pod'));
    const netInst = m.pods.get('/container-net-pod')!.podInstances[0];
    assert.deepEqual([net.service.kind, net.service.ports], ['pod', [{ name: 'web', port: 80, protocol: 'tcp' }]]);
    assert.deepEqual(net.service.endpoints, [{ instanceId: netInst.id, host: netInst.agentHostname, address: '127.0.1.1', ports: [80], healthy: true }]);

    const bridge = podService(m.pods.get('/container-bridge-pod')).service;
    const allocated = m.pods.get('/container-bridge-pod')!.podInstances[0].containers[0].endpoints[0].allocatedHostPort!;
    assert.ok(allocated >= 31000);
    assert.deepEqual([bridge.ports, bridge.endpoints.map((e) => [e.address, e.ports])], [[{ name: 'web', port: 80, protocol: 'tcp' }], [['agent-2', [allocated]]]]);

    // host networking with hostPort 0 and no containerPort: no number the service could have
    const ports = podService(m.pods.get('/ports-pod'));
    assert.deepEqual(ports.service.ports, []);
    assert.deepEqual(ports.warnings.map((w) => [w.kind, w.message]), [
      ['port', 'port "httpendpoint" has no fixed number (no containerPort, a dynamic hostPort); give it a containerPort or a fixed hostPort to put it in the mesh'],
      ['port', 'port "httpendpoint2" has no fixed number (no containerPort, a dynamic hostPort); give it a containerPort or a fixed hostPort to put it in the mesh'],
    ]);
    // its containers have health checks that have not run: DEGRADED, so running but not healthy
    assert.deepEqual(ports.service.endpoints.map((e) => [e.ports, e.healthy]), [[[], false]]);

    const fixed = podService(m.pods.get('/p/fixed'));
    assert.deepEqual(fixed.service.ports, [{ name: 'http-admin', port: 9901, protocol: 'http' }, { name: 'grpc', port: 9090, protocol: 'grpc' }]);
    assert.deepEqual(fixed.service.endpoints.map((e) => e.ports), [[9901, 9090]]);
    assert.deepEqual(fixed.warnings.map((w) => w.message), ['port "dns" is UDP only; the mesh proxies TCP, so it is left out']);
  });

  it('health: with health checks, not yet checked and failing are not healthy, alive is; without, running is', () => {
    const hc = { protocol: 'HTTP', path: '/health', portIndex: 0 };
    const m = marathon((s) => {
      s.createApp({ id: '/h/checked', cmd: 'x', instances: 3, healthChecks: [hc, { protocol: 'TCP', portIndex: 0 }] });
      s.createApp({ id: '/h/unchecked', cmd: 'x', instances: 1 });
      s.createPod(systemDef('system-pods', 'ports-pod.json'));
    });
    const health = (app: MarathonApp) => new Map(appService(app).service.endpoints.map((e) => [e.instanceId, e.healthy]));
    const [a, b, c] = m.apps.get('/h/checked')!.tasks.map((t) => t.id);
    assert.deepEqual([...health(m.apps.get('/h/checked')!).values()], [false, false, false]);
    m.state.setHealth(a, true);
    m.state.setHealth(b, false);
    let now = m.reread();
    assert.deepEqual([a, b, c].map((id) => health(now.apps.get('/h/checked')!).get(id)), [true, false, false]);
    assert.deepEqual([...health(now.apps.get('/h/unchecked')!).values()], [true]);

    // one result failing of two is failing (all must be alive)
    const app = now.apps.get('/h/checked')!;
    const mixed: MarathonApp = { ...app, tasks: app.tasks.map((t) => (t.id === a ? { ...t, healthCheckResults: [{ alive: true }, { alive: false }] } : t)) };
    assert.equal(health(mixed).get(a), false);
    // a task that is not running yet is no endpoint
    const staging: MarathonApp = { ...app, tasks: app.tasks.map((t) => (t.id === a ? { ...t, state: 'TASK_STAGING' } : t)) };
    assert.deepEqual([...health(staging).keys()].includes(a), false);

    const inst = now.pods.get('/ports-pod')!.podInstances[0].id;
    assert.deepEqual(podService(now.pods.get('/ports-pod')).service.endpoints.map((e) => e.healthy), [false]);
    m.state.setHealth(inst, true);
    now = m.reread();
    assert.equal(now.pods.get('/ports-pod')!.podInstances[0].status, 'STABLE');
    assert.deepEqual(podService(now.pods.get('/ports-pod')).service.endpoints.map((e) => e.healthy), [true]);
  });

  it('identity, labels, upstreams and hasSidecar from the labels; a bad upstreams label is a warning, never fatal', () => {
    const m = marathon((s) => {
      s.createApp({ id: '/prod/payments/api', cmd: 'x', labels: { 'istio.io/service-account': 'payments', 'citadel.io/upstreams': '/prod/db:5432,cache-prod.marathon.mesos:6379', 'sidecar.istio.io/status': '{"version":"abc"}' } });
      s.createApp({ id: '/prod/web', cmd: 'x', labels: { 'citadel.io/upstreams': '/prod/db' } });
    });
    const api = appService(m.apps.get('/prod/payments/api')).service;
    assert.deepEqual(
      { ...api, endpoints: api.endpoints.length, ports: api.ports.length },
      {
        kind: 'app', marathonId: '/prod/payments/api', dnsName: 'api-payments-prod.marathon.mesos', namespace: 'prod', serviceAccount: 'payments',
        labels: m.apps.get('/prod/payments/api')!.labels, ports: 1, endpoints: 1,
        upstreams: [{ service: '/prod/db', localPort: 5432 }, { service: 'cache-prod.marathon.mesos', localPort: 6379 }], hasSidecar: true,
      },
    );
    const web = appService(m.apps.get('/prod/web'));
    assert.deepEqual([web.service.upstreams, web.service.hasSidecar, web.service.serviceAccount], [[], false, 'default']);
    assert.deepEqual(web.warnings, [{ kind: 'upstreams', message: 'label citadel.io/upstreams "/prod/db": entry 1 "/prod/db" has no ":<local port>"; write "<service>:<local port>"; the label is ignored' }]);
  });
});

describe('MeshServices: snapshots from the view', () => {
  const hc = [{ protocol: 'HTTP', path: '/' }];
  function setup() {
    const m = marathon((s) => {
      s.createApp({ id: '/prod/payments/api', cmd: 'x', instances: 2, healthChecks: hc });
      s.createApp({ id: '/prod/db', cmd: 'x', instances: 1 });
      s.createPod(systemDef('system-pods', 'container-net-pod.json'));
    });
    const view = new MarathonView();
    const entries = () => {
      const now = m.reread();
      return [...[...now.apps.values()].map(workloadOfApp), ...[...now.pods.values()].map(workloadOfPod)];
    };
    view.replaceAll(entries());
    return { m, view, entries };
  }

  it('starts with every valid app and pod, looked up by Marathon id or Mesos-DNS name', () => {
    const { view } = setup();
    view.put('app', '/BAD/ns', { kind: 'app', id: '/BAD/ns', reason: 'invalid namespace' });
    const mesh = new MeshServices(view);
    const s = mesh.snapshot;
    assert.equal(s.version, 1);
    assert.deepEqual([...s.services.keys()].sort(), ['/container-net-pod', '/prod/db', '/prod/payments/api']);
    assert.equal(s.lookup('/prod/payments/api'), s.services.get('/prod/payments/api'));
    assert.equal(s.lookup('api-payments-prod.marathon.mesos'), s.services.get('/prod/payments/api'));
    assert.equal(s.lookup('DB-Prod.Marathon.Mesos'), s.services.get('/prod/db'));
    assert.equal(s.lookup('container-net-pod.marathon.mesos')?.kind, 'pod');
    assert.equal(s.lookup('/BAD/ns'), undefined);
    assert.equal(s.lookup('nothing.marathon.mesos'), undefined);
    assert.equal(s.lookup('prod/db'), undefined);
    mesh.close();
  });

  it('a change makes a new version in which only the changed service is a new object', () => {
    const { m, view, entries } = setup();
    const mesh = new MeshServices(view);
    const seen: MeshSnapshot[] = [];
    mesh.onSnapshot((s) => seen.push(s));
    const first = mesh.snapshot;
    const api = first.services.get('/prod/payments/api')!;
    assert.deepEqual(api.endpoints.map((e) => e.healthy), [false, false]);

    m.state.setHealth(m.state.apps.get('/prod/payments/api')!.tasks[0].id, true);
    view.replaceAll(entries());
    assert.equal(seen.length, 1);
    const second = mesh.snapshot;
    assert.equal(second, seen[0]);
    assert.equal(second.version, 2);
    assert.notEqual(second.services.get('/prod/payments/api'), api);
    assert.deepEqual(second.services.get('/prod/payments/api')!.endpoints.map((e) => e.healthy).sort(), [false, true]);
    assert.equal(second.services.get('/prod/db'), first.services.get('/prod/db'));
    assert.equal(second.services.get('/container-net-pod'), first.services.get('/container-net-pod'));
    assert.equal(second.lookup('api-payments-prod.marathon.mesos'), second.services.get('/prod/payments/api'));
    // the old snapshot is untouched
    assert.equal(first.services.get('/prod/payments/api'), api);
    assert.equal(first.lookup('api-payments-prod.marathon.mesos'), api);

    // a re-list that finds nothing new, and a change the mesh does not read: no new snapshot, same objects
    view.replaceAll(entries());
    const db = view.get('app', '/prod/db') as Workload;
    view.put('app', '/prod/db', { ...db, instances: [...db.instances, { id: 'prod_db.staging', host: 'agent-9', state: 'TASK_STAGING', ports: [31999] }] });
    assert.equal(seen.length, 1);
    assert.equal(mesh.snapshot, second);

    // removal and addition
    m.state.deleteApp('/prod/db');
    m.state.createApp({ id: '/prod/cache', cmd: 'x' });
    view.replaceAll(entries());
    const third = mesh.snapshot;
    assert.deepEqual([third.version, seen.length], [3, 2]);
    assert.equal(third.lookup('db-prod.marathon.mesos'), undefined);
    assert.equal(third.lookup('cache-prod.marathon.mesos')?.marathonId, '/prod/cache');
    assert.equal(third.services.get('/prod/payments/api'), second.services.get('/prod/payments/api'));
    assert.equal(second.lookup('db-prod.marathon.mesos')?.marathonId, '/prod/db');

    // an identity that turns invalid takes the service out
    const cache = view.get('app', '/prod/cache') as Workload;
    view.put('app', '/prod/cache', { kind: 'app', id: cache.id, reason: 'bad account' });
    assert.deepEqual([mesh.snapshot.version, mesh.snapshot.services.has('/prod/cache')], [4, false]);
    mesh.close();
    view.put('app', '/prod/cache', cache);
    assert.equal(mesh.snapshot.version, 4, 'closed: no longer follows the view');
  });

  it('two services with one Mesos-DNS name: the name resolves to neither until one goes', () => {
    const view = new MarathonView();
    const w = (id: string): Workload => ({ kind: 'app', id, namespace: 'x', serviceAccount: 'default', instances: [] });
    view.replaceAll([w('/a-b/c')]);
    const log: string[] = [];
    const mesh = new MeshServices(view, { logger: createLogger({ write: (l) => log.push(l) }) });
    assert.equal(mesh.snapshot.lookup('c-a-b.marathon.mesos')?.marathonId, '/a-b/c');
    view.put('app', '/b/c-a', w('/b/c-a'));
    assert.equal(mesh.snapshot.lookup('c-a-b.marathon.mesos'), undefined);
    assert.equal(mesh.snapshot.lookup('/b/c-a')?.dnsName, 'c-a-b.marathon.mesos');
    assert.match(log.join('\n'), /share a Mesos-DNS name.*"marathonIds":\["\/a-b\/c","\/b\/c-a"\]/);
    view.put('app', '/a-b/c', undefined);
    assert.equal(mesh.snapshot.lookup('c-a-b.marathon.mesos')?.marathonId, '/b/c-a');
    mesh.close();
  });

  it('reports a bad upstreams label once (log, metric, warnings()), and again only when it changes', async () => {
    const view = new MarathonView();
    const w = (label: string, hosts: string[]): Workload => ({
      kind: 'app', id: '/prod/web', namespace: 'prod', serviceAccount: 'default', labels: { 'citadel.io/upstreams': label }, ports: [{ port: 80, protocol: 'tcp' }],
      instances: hosts.map((h, i) => ({ id: `t${i}`, host: h, state: 'TASK_RUNNING', address: h, ports: [31000 + i] })),
    });
    view.replaceAll([w('/prod/db:5432:99999', ['h1'])]);
    const log: string[] = [];
    const registry = new Registry();
    const mesh = new MeshServices(view, { logger: createLogger({ write: (l) => log.push(l) }), registry });
    const ignored = () => log.filter((l) => l.includes('upstreams label ignored')).length;
    assert.equal(ignored(), 1);
    assert.deepEqual(mesh.warnings().map((x) => [x.marathonId, x.kind]), [['/prod/web', 'upstreams']]);
    assert.match(await registry.metrics(), /citadel_mesh_services_with_warnings 1/);
    assert.deepEqual(mesh.snapshot.services.get('/prod/web')!.upstreams, []);
    view.put('app', '/prod/web', w('/prod/db:5432:99999', ['h1', 'h2'])); // the service changes, the label does not
    assert.equal(mesh.snapshot.services.get('/prod/web')!.endpoints.length, 2);
    assert.equal(ignored(), 1);
    view.put('app', '/prod/web', w('/prod/db', ['h1', 'h2']));
    assert.equal(ignored(), 2);
    view.put('app', '/prod/web', w('/prod/db:5432', ['h1', 'h2']));
    assert.deepEqual(mesh.warnings(), []);
    assert.deepEqual(mesh.snapshot.services.get('/prod/web')!.upstreams, [{ service: '/prod/db', localPort: 5432 }]);
    const metrics = await registry.metrics();
    assert.match(metrics, /citadel_mesh_services_with_warnings 0/);
    assert.match(metrics, /citadel_mesh_service_warnings_reported_total 2/);
    assert.match(metrics, /citadel_mesh_services 1/);
    mesh.close();
  });
});

describe('MeshServices through the Marathon client, against the simulator', () => {

  it('health_status_changed_event and status_update_event alone move endpoints', async () => {
    const sim = new MarathonSimulator({ agents: ['h1', 'h2'], containerNetworkCidr: '127.0.1.0/24', healthCheckDelayMs: null });
    const url = await sim.listen(0);
    sim.state.createApp({ id: '/prod/api', cmd: 'x', instances: 2, networks: [{ mode: 'container' }], container: { type: 'MESOS', portMappings: [{ containerPort: 8080, name: 'http' }] }, healthChecks: [{ protocol: 'MESOS_HTTP', path: '/' }] });
    const client = new MarathonClient({ urls: [url], backoff: { initialMs: 20, maxMs: 100 } });
    try {
      await client.start();
      const mesh = new MeshServices(client.view);
      const endpoints = () => mesh.snapshot.lookup('api-prod.marathon.mesos')?.endpoints ?? [];
      assert.deepEqual(endpoints().map((e) => [e.address, e.ports, e.healthy]).sort(), [['127.0.1.1', [8080], false], ['127.0.1.2', [8080], false]]);
      const [first, second] = sim.state.apps.get('/prod/api')!.tasks;

      const before = sim.eventsSent;
      const r = await fetch(`${url}/_sim/tasks/${first.id}/health`, { method: 'PUT', body: JSON.stringify({ alive: true }) });
      assert.equal(r.status, 200);
      await waitFor('the first task healthy', () => endpoints().some((e) => e.instanceId === first.id && e.healthy));
      assert.equal(sim.eventsSent - before, 1, 'only health_status_changed_event went out');
      await fetch(`${url}/_sim/tasks/${first.id}/health`, { method: 'PUT', body: JSON.stringify({ alive: false }) });
      await waitFor('the first task failing', () => endpoints().every((e) => !e.healthy));

      // a task that failed, reported by nothing but its status update
      second.state = 'TASK_FAILED';
      sim.state.emit('status_update_event', () => ({ slaveId: second.slaveId, taskId: second.id, taskStatus: 'TASK_FAILED', message: '', appId: '/prod/api', host: second.host, ipAddresses: [{ ipAddress: second.ip, protocol: 'IPv4' }], ports: second.ports, version: second.version }));
      await waitFor('the failed task gone', () => endpoints().length === 1);
      assert.deepEqual(endpoints().map((e) => e.instanceId), [first.id]);
      mesh.close();
    } finally {
      await client.stop();
      await sim.close();
    }
  });
});
