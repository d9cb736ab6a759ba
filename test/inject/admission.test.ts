/** The admission proxy's rules without sockets: routes, agent-directory mounts, namespace claims, and the review of a write. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reviewDefinitionWrite, type AdmissionPolicy, type Verdict } from '../../src/inject/admission';
import { admissionRouteOf, nonCanonicalWritePath, type AdmissionRoute } from '../../src/inject/admission-route';
import { injectConfig } from '../../src/inject/config';
import { IdentityDirectories } from '../../src/inject/identity-mounts';
import { NamespaceMap, parseNamespaceMapFile } from '../../src/inject/namespace-map';

type Obj = Record<string, any>;
const dirs = new IdentityDirectories(['/var/run/citadel/sds', '/var/lib/citadel/certs/']);
const own = { namespace: 'prod', serviceAccount: 'api' };

const policy = (over: Partial<AdmissionPolicy> = {}): AdmissionPolicy => ({
  inject: injectConfig(),
  convertApps: false,
  directories: dirs,
  namespaces: new NamespaceMap(),
  ...over,
});
const pod = (over: Obj = {}): Obj => ({
  id: '/prod/api',
  labels: { 'sidecar.istio.io/inject': 'true' },
  containers: [{ name: 'app', resources: { cpus: 0.5, mem: 64 }, endpoints: [{ name: 'http', containerPort: 8080 }] }],
  networks: [{ mode: 'container', name: 'dcos' }],
  ...over,
});
const app = (over: Obj = {}): Obj => ({
  id: '/prod/web',
  cmd: 'serve',
  labels: { 'sidecar.istio.io/inject': 'true' },
  networks: [{ mode: 'container', name: 'dcos' }],
  container: { type: 'MESOS', portMappings: [{ containerPort: 80 }] },
  ...over,
});
const review = (route: AdmissionRoute, body: unknown, p = policy(), exists: (id: string) => boolean = () => false): Promise<Verdict> =>
  reviewDefinitionWrite(route, typeof body === 'string' ? body : JSON.stringify(body), p, async (id) => exists(id));
const refusal = (v: Verdict) => {
  assert.equal(v.kind, 'refuse', JSON.stringify(v));
  return (v as Extract<Verdict, { kind: 'refuse' }>).refusal;
};
const forwarded = (v: Verdict) => {
  assert.equal(v.kind, 'forward', JSON.stringify(v));
  return v as Extract<Verdict, { kind: 'forward' }>;
};

describe('admission routes', () => {
  it('reads POST/PUT/PATCH of /v2/pods, /v2/apps and /v2/groups, not their sub-resources nor other methods', () => {
    const cases: Array<[string, string, AdmissionRoute | undefined]> = [
      ['POST', '/v2/pods', { resource: 'pods', method: 'POST' }],
      ['POST', '/v2/pods/', { resource: 'pods', method: 'POST' }],
      ['PUT', '/v2/pods/prod/api', { resource: 'pods', method: 'PUT', id: '/prod/api' }],
      ['DELETE', '/v2/pods/prod/api', undefined],
      ['GET', '/v2/pods', undefined],
      ['DELETE', '/v2/pods/prod/api::instances/x', undefined],
      ['POST', '/v2/apps', { resource: 'apps', method: 'POST' }],
      ['PUT', '/v2/apps', { resource: 'apps', method: 'PUT' }],
      ['PATCH', '/v2/apps/prod/web', { resource: 'apps', method: 'PATCH', id: '/prod/web' }],
      ['POST', '/v2/apps/prod/web/restart', undefined],
      ['PUT', '/v2/apps/prod/web/tasks', undefined],
      // a first segment named tasks is an app's id: Jersey routes <id>/tasks to the tasks resource only after an id
      ['PUT', '/v2/apps/tasks/x', { resource: 'apps', method: 'PUT', id: '/tasks/x' }],
      ['POST', '/v2/groups', { resource: 'groups', method: 'POST', id: '/' }],
      ['PUT', '/v2/groups/prod', { resource: 'groups', method: 'PUT', id: '/prod' }],
      ['GET', '/v2/groups/prod/versions', undefined],
      ['POST', '/v2/events', undefined],
    ];
    for (const [method, path, want] of cases) assert.deepEqual(admissionRouteOf(method, path), want, `${method} ${path}`);
  });

  it('refuses writes whose path Marathon would resolve differently, or outside /v2/', () => {
    for (const bad of ['/v2/./pods', '/v2//pods', '/v2/pods/../pods', '/v2/%70ods', '/v2/pods;x=1', '/service/marathon/v2/pods', '/V2/pods']) {
      assert.ok(nonCanonicalWritePath(bad), bad);
    }
    for (const ok of ['/v2/pods', '/v2/pods/', '/v2/apps/prod/web', '/v2/groups/prod.x/a-b']) assert.equal(nonCanonicalWritePath(ok), undefined, ok);
  });
});

describe('mounts of the node agent directories', () => {
  it("allows only the workload's own identity directory (or inside it); refuses others', a namespace's, the directories themselves and what holds them", () => {
    assert.equal(dirs.problemWith('/var/run/citadel/sds/prod/api', own), undefined);
    assert.equal(dirs.problemWith('/var/run/citadel/sds/prod/api/socket', own), undefined);
    assert.equal(dirs.problemWith('/var/lib/citadel/certs/prod/api/', own), undefined);
    assert.equal(dirs.problemWith('/var/lib/docker', own), undefined);
    assert.equal(dirs.problemWith('data', own), undefined, "a relative path is the sandbox's");
    assert.equal(dirs.problemWith('/var/run/citadel/sdsx', own), undefined, 'a sibling with a longer name is not under it');
    assert.match(dirs.problemWith('/var/run/citadel/sds/prod/payments', own)!, /is the directory of identity prod\/payments under \/var\/run\/citadel\/sds; this workload may mount only its own identity's directory \/var\/run\/citadel\/sds\/prod\/api \(prod\/api\)/);
    assert.match(dirs.problemWith('/var/run/citadel/sds/prod/api/../payments', own)!, /identity prod\/payments/);
    assert.match(dirs.problemWith('/var/run/citadel/sds//prod', own)!, /every identity of namespace prod/);
    assert.match(dirs.problemWith('/var/lib/citadel/certs', own)!, /holds \/var\/lib\/citadel\/certs/);
    assert.match(dirs.problemWith('/var', own)!, /holds \/var\/run\/citadel\/sds/);
    assert.match(dirs.problemWith('/', own)!, /holds/);
    assert.match(dirs.problemWith('/var/run/citadel/sds/prod/api', undefined)!, /no valid identity/);
  });

  it('names the volume mounts of a pod, the hostPath and Docker -v/--mount parameters of an app', () => {
    const p = pod({
      volumes: [{ name: 'ok', host: '/var/run/citadel/sds/prod/api' }, { name: 'steal', host: '/var/run/citadel/sds/kube/admin' }, { name: 'unused', host: '/var/lib/citadel/certs' }],
      containers: [
        { name: 'a', volumeMounts: [{ name: 'ok', mountPath: '/ok' }] },
        { name: 'b', volumeMounts: [{ name: 'ok', mountPath: '/ok' }, { name: 'steal', mountPath: '/s' }] },
      ],
    });
    assert.deepEqual(dirs.podProblems(p, '', own).map((x) => x.path), ['/containers(1)/volumeMounts(1)', '/volumes(2)/host']);
    const a = app({ container: { type: 'DOCKER', volumes: [{ hostPath: '/var/lib/citadel/certs/kube/admin', containerPath: '/c', mode: 'RO' }], docker: { image: 'x', parameters: [{ key: 'label', value: 'a=b' }, { key: 'volume', value: '/var/run/citadel/sds:/s:ro' }, { key: 'mount', value: 'type=bind,source=/var/run/citadel,target=/m' }] } } });
    assert.deepEqual(dirs.appProblems(a, '/apps(3)', own).map((x) => x.path), ['/apps(3)/container/volumes(0)/hostPath', '/apps(3)/container/docker/parameters(1)/value', '/apps(3)/container/docker/parameters(2)/value']);
  });
});

describe('namespace map', () => {
  it('without an entry a label may only repeat the namespace the path implies; an entry adds namespaces, "*" any, and may restrict service accounts', () => {
    const none = new NamespaceMap();
    assert.deepEqual(none.claimProblems('pod', '/prod/api', { 'istio.io/namespace': 'prod' }, ''), []);
    assert.deepEqual(none.claimProblems('pod', '/api', { 'istio.io/namespace': 'default' }, ''), []);
    assert.deepEqual(none.claimProblems('pod', '/prod/api', { 'istio.io/service-account': 'anything' }, ''), []);
    const [p] = none.claimProblems('pod', '/prod/api', { 'istio.io/namespace': 'kube-system' }, '/pods(0)');
    assert.equal(p.path, '/pods(0)/labels/istio.io/namespace');
    assert.match(p.error, /namespace "kube-system" may not be claimed by \/prod\/api: its path allows "prod" \(the namespace map has no entry for it\)/);

    const map = parseNamespaceMapFile(JSON.stringify({
      '/teams': ['teams-shared'],
      '/teams/payments': { namespaces: ['payments'], serviceAccounts: ['api', 'worker'] },
      '/platform': '*',
    }), 'map.json');
    assert.deepEqual(map.claimProblems('pod', '/teams/payments/api', { 'istio.io/namespace': 'payments', 'istio.io/service-account': 'worker' }, ''), []);
    assert.deepEqual(map.claimProblems('pod', '/teams/payments/api', { 'istio.io/namespace': 'teams' }, ''), [], 'the implied namespace is always allowed');
    assert.deepEqual(map.claimProblems('pod', '/teams/payments/api', { 'istio.io/namespace': 'teams-shared' }, '').map((x) => x.path), ['/labels/istio.io/namespace'], 'the longest prefix decides');
    assert.deepEqual(map.claimProblems('pod', '/teams/payments/api', { 'istio.io/service-account': 'admin' }, '').map((x) => x.path), ['/labels/istio.io/service-account']);
    assert.deepEqual(map.claimProblems('pod', '/teams/paymentsx/api', { 'istio.io/namespace': 'teams-shared' }, ''), [], 'prefixes match whole segments');
    assert.deepEqual(map.claimProblems('pod', '/platform/dns', { 'istio.io/namespace': 'kube-system' }, ''), []);
  });

  it('reads YAML and refuses what it cannot mean', () => {
    const yaml = parseNamespaceMapFile('/prod:\n  - prod\n  - prod-canary\n', 'map.yaml');
    assert.deepEqual(yaml.claimProblems('pod', '/prod/x', { 'istio.io/namespace': 'prod-canary' }, ''), []);
    assert.throws(() => parseNamespaceMapFile('{"prod": ["prod"]}', 'm.json'), /m\.json: \/prod: "prod" must be an absolute Marathon path/);
    assert.throws(() => parseNamespaceMapFile('{"/prod": ["Prod"]}', 'm.json'), /m\.json: \/\/prod\(0\): namespace "Prod" must be a DNS label/);
    assert.throws(() => parseNamespaceMapFile('{"/prod": {"namespace": ["prod"]}}', 'm.json'), /unknown key \(known: namespaces, serviceAccounts\)/);
    assert.throws(() => parseNamespaceMapFile('[1]', 'm.json'), /expected an object of Marathon path prefix -> namespaces/);
  });
});

describe('reviewing a write', () => {
  it('injects a pod; leaves the bytes alone when nothing changes', async () => {
    const v = forwarded(await review({ resource: 'pods', method: 'POST' }, pod()));
    assert.deepEqual(v.injected, ['/prod/api']);
    const out = JSON.parse(v.body!);
    assert.deepEqual(out.containers.map((c: Obj) => c.name), ['app', 'istio-proxy']);
    const again = forwarded(await review({ resource: 'pods', method: 'POST' }, out));
    assert.equal(again.body, undefined, 'already current: forwarded as it came');
    const plain = forwarded(await review({ resource: 'pods', method: 'POST' }, pod({ labels: {} })));
    assert.equal(plain.body, undefined);
    assert.deepEqual(plain.injected, []);
  });

  it('PUT /v2/pods/<id> without an id in the body: injected under the path id, the body still without one', async () => {
    const { id: _, ...noId } = pod();
    const v = forwarded(await review({ resource: 'pods', method: 'PUT', id: '/prod/api' }, noId));
    const out = JSON.parse(v.body!);
    assert.equal(out.id, undefined);
    assert.match(JSON.stringify(out.containers[1].environment), /"CITADEL_MARATHON_ID":"\/prod\/api"/);
  });

  it('a body id that is not the path id goes to Marathon as it is (Marathon answers 400), once checked under both', async () => {
    const v = forwarded(await review({ resource: 'pods', method: 'PUT', id: '/prod/other' }, pod()));
    assert.equal(v.body, undefined);
    const bad = pod({ volumes: [{ name: 'v', host: '/var/run/citadel/sds/prod/default' }], containers: [{ name: 'a', volumeMounts: [{ name: 'v', mountPath: '/v' }] }] });
    // own identity under /prod/api is prod/default, but the body names /kube/x: refused under that id
    const r = refusal(await review({ resource: 'pods', method: 'PUT', id: '/prod/api' }, { ...bad, id: '/kube/x' }));
    assert.deepEqual((r.body.details as Obj[]).map((d) => d.path), ['/containers(0)/volumeMounts(0)']);
  });

  it('an opted-in app: refused naming citadel inject, or with --convert-apps sent to /v2/pods as a pod', async () => {
    const r = refusal(await review({ resource: 'apps', method: 'POST' }, app()));
    assert.equal(r.status, 422);
    assert.match(r.body.message, /citadel inject -f app\.json > pod\.json/);
    assert.deepEqual(r.body.details, [{ path: '/labels/sidecar.istio.io/inject', errors: ['app /prod/web opts in to sidecar injection; this proxy converts apps into pods only with --convert-apps'] }]);
    const v = forwarded(await review({ resource: 'apps', method: 'POST' }, app(), policy({ convertApps: true })));
    assert.deepEqual(v.rewrite, { method: 'POST', path: '/v2/pods' });
    assert.deepEqual(JSON.parse(v.body!).containers.map((c: Obj) => c.name), ['web', 'istio-proxy']);
    const put = forwarded(await review({ resource: 'apps', method: 'PUT', id: '/prod/web' }, app(), policy({ convertApps: true })));
    assert.deepEqual(put.rewrite, { method: 'PUT', path: '/v2/pods/prod/web' });
  });

  it('an app Marathon already has stays an app (a scaling PUT is no creation)', async () => {
    const p = policy({ inject: injectConfig({ file: { defaults: { inject: true }, namespaces: {} } }) });
    const v = forwarded(await review({ resource: 'apps', method: 'PUT', id: '/prod/web' }, { instances: 3 }, p, (id) => id === '/prod/web'));
    assert.equal(v.body, undefined);
    assert.deepEqual(v.keptApps, ['/prod/web']);
    const list = forwarded(await review({ resource: 'apps', method: 'PATCH' }, [app({ id: '/prod/a' }), app({ id: '/prod/b', labels: {} })], p, () => true));
    assert.deepEqual(list.keptApps, ['/prod/a', '/prod/b']);
    const created = refusal(await review({ resource: 'apps', method: 'PUT' }, [app({ id: '/prod/a' })], p, () => false));
    assert.match((created.body.details as Obj[])[0].errors[0], /a list update of \/v2\/apps cannot create a pod/);
  });

  it("a group: its pods injected (ids resolved against the group), a new opted-in app refused (Marathon's /v2/groups creates no pods)", async () => {
    const group = { id: 'prod', pods: [pod({ id: 'api' })], groups: [{ id: 'sub', pods: [pod({ id: 'db', labels: {} })] }] };
    const v = forwarded(await review({ resource: 'groups', method: 'PUT', id: '/' }, group));
    assert.deepEqual(v.injected, ['/prod/api']);
    const out = JSON.parse(v.body!);
    assert.equal(out.pods[0].id, 'api', 'the id as written');
    assert.match(JSON.stringify(out.pods[0]), /CITADEL_MARATHON_ID\\?":\\?"\/prod\/api/);
    assert.deepEqual(out.groups, group.groups);
    const r = refusal(await review({ resource: 'groups', method: 'POST', id: '/' }, { id: '/prod', apps: [app({ id: 'web' })] }, policy({ convertApps: true })));
    assert.equal((r.body.details as Obj[])[0].path, '/apps(0)');
    assert.match((r.body.details as Obj[])[0].errors[0], /^app \/prod\/web opts in to sidecar injection and would become a pod, which Marathon's \/v2\/groups does not create pods/);
  });

  it('claims and mounts are checked in every member, injected or not, each at its path', async () => {
    const body = {
      id: '/prod',
      apps: [{ id: 'web', cmd: 'x', container: { volumes: [{ hostPath: '/var/lib/citadel/certs/kube/admin', containerPath: 'c', mode: 'RO' }] } }],
      groups: [{ id: 'team', pods: [pod({ id: 'api', labels: { 'istio.io/namespace': 'kube-system' } })] }],
    };
    const r = refusal(await review({ resource: 'groups', method: 'PUT', id: '/prod' }, body));
    assert.equal(r.body.message, 'Object is not valid');
    assert.deepEqual((r.body.details as Obj[]).map((d) => d.path), ['/apps(0)/container/volumes(0)/hostPath', '/groups(0)/pods(0)/labels/istio.io/namespace']);
  });

  it('a broken definition to inject is refused at its path; JSON Marathon would have to guess at is refused as Marathon would; an empty body goes on', async () => {
    const r = refusal(await review({ resource: 'pods', method: 'POST' }, pod({ labels: { 'sidecar.istio.io/inject': 'yes' } })));
    assert.deepEqual(r.body.details, [{ path: '/labels/sidecar.istio.io/inject', errors: ['"yes" is neither "true" nor "false"'] }]);
    const trailing = refusal(await review({ resource: 'pods', method: 'POST' }, `${JSON.stringify(pod())} trailing`));
    assert.equal(trailing.status, 400);
    assert.equal(trailing.body.message, 'Invalid JSON');
    assert.deepEqual(forwarded(await review({ resource: 'pods', method: 'POST' }, '')).body, undefined);
    const noId = refusal(await review({ resource: 'pods', method: 'POST' }, pod({ id: undefined })));
    assert.deepEqual((noId.body.details as Obj[]).map((d) => d.path), ['/id']);
  });
});
