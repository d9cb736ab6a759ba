/**
 * The admission proxy over real sockets, in front of the Marathon simulator: Marathon's own system
 * apps and pods posted through it and read back with the sidecar, refusals in Marathon's format,
 * and everything else (GETs, errors, credentials, query strings, redirects, the event stream)
 * passing as Marathon sent it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdmissionProxy, type AdmissionProxyOptions } from '../../src/inject/admission-proxy';
import { injectConfig } from '../../src/inject/config';
import { IdentityDirectories } from '../../src/inject/identity-mounts';
import { NamespaceMap } from '../../src/inject/namespace-map';
import { MarathonSimulator, type MarathonSimulatorOptions } from '../../src/marathon/simulator';
import { SseParser, type ServerSentEvent } from '../../src/marathon/sse';
import { repoRoot, sharedMarathonDir } from '../helpers/marathon-sim';
import { tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { onContainerNetwork, onHostNetwork, systemFixtures } from './fixtures';

type Obj = Record<string, any>;

interface Answer {
  status: number;
  statusMessage: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/**
 * One HTTP/1.1 request with node:http (no redirects followed, raw headers kept). The path goes as
 * written, dot segments and escapes included (a URL would normalize them); raw header lists get
 * a Host, which node adds only to header objects.
 */
function request(url: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders | string[]; body?: string | Buffer } = {}): Promise<Answer> {
  const m = /^(http:\/\/[^/]+)(.*)$/.exec(url)!;
  const base = new URL(m[1]);
  const headers = Array.isArray(opts.headers) ? ['Host', base.host, ...opts.headers] : opts.headers;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, path: m[2] || '/', method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode!, statusMessage: res.statusMessage ?? '', headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
const json = (body: unknown) => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

/** Headers that differ between any two answers (time, connection management). */
const PER_CONNECTION = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);
function endToEnd(a: Answer): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < a.rawHeaders.length; i += 2) if (!PER_CONNECTION.has(a.rawHeaders[i].toLowerCase())) out.push([a.rawHeaders[i], a.rawHeaders[i + 1]]);
  return out;
}

const sidecarOf = (pod: Obj): Obj => (pod.containers as Obj[]).find((c) => c.name === 'istio-proxy')!;
const withoutVersion = (body: string) => {
  const { version: _, ...rest } = JSON.parse(body) as Obj;
  return JSON.stringify(rest);
};

const podDef = (over: Obj = {}): Obj => ({
  id: '/prod/api',
  labels: { 'sidecar.istio.io/inject': 'true' },
  containers: [{ name: 'app', resources: { cpus: 0.5, mem: 64 }, image: { kind: 'DOCKER', id: 'nginx' }, endpoints: [{ name: 'http', containerPort: 8080, hostPort: 0 }] }],
  networks: [{ mode: 'container', name: 'dcos' }],
  ...over,
});
const appDef = (over: Obj = {}): Obj => ({
  id: '/prod/web',
  cmd: 'python3 -m http.server 8080',
  cpus: 0.1,
  mem: 32,
  labels: { 'sidecar.istio.io/inject': 'true' },
  networks: [{ mode: 'container', name: 'dcos' }],
  container: { type: 'MESOS', portMappings: [{ containerPort: 8080, name: 'http' }] },
  ...over,
});

interface Stack {
  sim: MarathonSimulator;
  simUrl: string;
  proxy: AdmissionProxy;
  url: string;
  close(): Promise<void>;
}

/** The simulator and a proxy in front of it, both listening on loopback. */
async function stack(opts: { convertApps?: boolean; injectByDefault?: boolean; sim?: MarathonSimulatorOptions; namespaces?: NamespaceMap; proxy?: Partial<AdmissionProxyOptions>; marathon?: (simUrl: string) => string } = {}): Promise<Stack> {
  const sim = new MarathonSimulator({ heartbeatMs: 60_000, ...opts.sim });
  const simUrl = await sim.listen();
  const proxy = new AdmissionProxy({
    marathon: opts.marathon ? opts.marathon(simUrl) : simUrl,
    policy: {
      inject: injectConfig({ file: { defaults: { inject: opts.injectByDefault ?? false }, namespaces: {} } }),
      convertApps: opts.convertApps ?? false,
      directories: new IdentityDirectories(['/var/run/citadel/sds', '/var/lib/citadel/certs']),
      namespaces: opts.namespaces ?? new NamespaceMap(),
    },
    ...opts.proxy,
  });
  const url = await proxy.listen(0);
  return { sim, simUrl, proxy, url, close: async () => { await proxy.close(); await sim.close(); } };
}

/** The system fixtures under ids of their own (two of them are both /sleep), on a container network where Marathon would put them on the host. */
function fixtures() {
  return systemFixtures().map((f) => {
    const id = `/${f.kind}s/${path.basename(f.file, '.json')}`;
    const json = { ...(onHostNetwork(f) ? onContainerNetwork(f) : f.json), id } as Obj;
    return { ...f, id, json, hostJson: { ...f.json, id } as Obj, onHost: onHostNetwork(f) };
  });
}

describe("Marathon's system apps and pods through the proxy", () => {
  it('with --convert-apps: every one is created as a pod carrying the sidecar, read back from Marathon', async (t) => {
    const s = await stack({ convertApps: true, injectByDefault: true });
    t.after(() => s.close());
    for (const f of fixtures()) {
      const res = await request(`${s.url}/v2/${f.kind}s`, { method: 'POST', ...json(f.json) });
      assert.equal(res.status, 201, `${f.file}: ${res.body}`);
      assert.ok(Array.isArray(JSON.parse(res.body).containers), `${f.file}: Marathon answered with the pod`);
      const back = await request(`${s.simUrl}/v2/pods${f.id}`);
      assert.equal(back.status, 200, `${f.file}: the pod is in Marathon`);
      const pod = JSON.parse(back.body) as Obj;
      assert.equal(sidecarOf(pod)?.image.id, 'docker.io/envoyproxy/envoy:v1.40.0', f.file);
      assert.deepEqual(JSON.parse(pod.labels['sidecar.istio.io/status']).containers, ['istio-proxy'], f.file);
      assert.equal(pod.volumes.find((v: Obj) => v.name === 'citadel-identity').host, `/var/run/citadel/sds/${f.kind}s/default`, f.file);
      if (f.kind === 'app') {
        assert.ok(pod.labels['citadel.io/converted-from-app'], `${f.file}: the conversion is recorded`);
        assert.equal((await request(`${s.simUrl}/v2/apps${f.id}`)).status, 404, `${f.file}: no app was created`);
      } else {
        assert.deepEqual(pod.containers.slice(0, -1).map((c: Obj) => c.name), f.json.containers.map((c: Obj) => c.name), `${f.file}: its own containers come first`);
      }
    }
    assert.equal(s.sim.state.pods.size, fixtures().length);
    assert.equal(s.sim.state.apps.size, 0);
  });

  it('without --convert-apps: an opted-in app is refused with 422 naming citadel inject and nothing is created; one on the host network (not injected) passes as an app', async (t) => {
    const s = await stack({ injectByDefault: true });
    t.after(() => s.close());
    for (const f of fixtures().filter((x) => x.kind === 'app')) {
      const res = await request(`${s.url}/v2/apps`, { method: 'POST', ...json(f.json) });
      assert.equal(res.status, 422, `${f.file}: ${res.body}`);
      const body = JSON.parse(res.body);
      assert.match(body.message, new RegExp(`^App ${f.id} opts in to sidecar injection.*citadel inject -f app\\.json > pod\\.json.*--convert-apps`), f.file);
      assert.deepEqual(body.details, [{ path: '/', errors: [`app ${f.id} opts in to sidecar injection (its namespace injects by default); this proxy converts apps into pods only with --convert-apps`] }]);
      assert.equal((await request(`${s.simUrl}/v2/apps${f.id}`)).status, 404);
      assert.equal((await request(`${s.simUrl}/v2/pods${f.id}`)).status, 404);
    }
    const host = fixtures().find((f) => f.kind === 'app' && f.onHost)!;
    const res = await request(`${s.url}/v2/apps`, { method: 'POST', ...json(host.hostJson) });
    assert.equal(res.status, 201, res.body);
    assert.equal((await request(`${s.simUrl}/v2/apps${host.id}`)).status, 200);
  });
});

describe('writes through the proxy', () => {
  let s: Stack;
  before(async () => (s = await stack({ convertApps: true })));
  after(() => s.close());

  it('PUT of the same definition twice stores the same bytes; PUT of what Marathon holds changes nothing either', async () => {
    const def = podDef({ id: '/prod/twice' });
    const first = await request(`${s.url}/v2/pods/prod/twice`, { method: 'PUT', ...json(def) });
    assert.equal(first.status, 201, first.body);
    const a = await request(`${s.simUrl}/v2/pods/prod/twice`);
    assert.ok(sidecarOf(JSON.parse(a.body)));
    const second = await request(`${s.url}/v2/pods/prod/twice`, { method: 'PUT', ...json(def) });
    assert.equal(second.status, 200, second.body);
    const b = await request(`${s.simUrl}/v2/pods/prod/twice`);
    assert.equal(withoutVersion(b.body), withoutVersion(a.body), 'the same bytes but the version Marathon stamps');
    const third = await request(`${s.url}/v2/pods/prod/twice`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: withoutVersion(b.body) });
    assert.equal(third.status, 200, third.body);
    assert.equal(withoutVersion((await request(`${s.simUrl}/v2/pods/prod/twice`)).body), withoutVersion(a.body));
  });

  it('a pod that does not opt in is forwarded byte for byte: Marathon stores what it would store directly', async () => {
    const def = podDef({ id: '/prod/plain-a', labels: { team: 'x' } });
    const text = `{  "id": "/prod/plain-a",\n "labels": {"team":"x"}, "containers": ${JSON.stringify(def.containers)}, "networks": [{"mode":"container","name":"dcos"}]}`;
    assert.equal((await request(`${s.url}/v2/pods`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text })).status, 201);
    assert.equal((await request(`${s.simUrl}/v2/pods`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text.replace('plain-a', 'plain-b') })).status, 201);
    const viaProxy = JSON.parse((await request(`${s.simUrl}/v2/pods/prod/plain-a`)).body);
    const direct = JSON.parse((await request(`${s.simUrl}/v2/pods/prod/plain-b`)).body);
    assert.deepEqual({ ...viaProxy, id: '', version: '' }, { ...direct, id: '', version: '' });
    assert.equal(sidecarOf(viaProxy), undefined);
  });

  it('an opted-in app PUT under a new id becomes a pod; an app Marathon already has stays an app (a scaling PUT passes)', async () => {
    const put = await request(`${s.url}/v2/apps/prod/fresh`, { method: 'PUT', ...json(appDef({ id: '/prod/fresh' })) });
    assert.equal(put.status, 201, put.body);
    assert.ok(sidecarOf(JSON.parse((await request(`${s.simUrl}/v2/pods/prod/fresh`)).body)));
    // created behind the proxy's back, then updated through it
    assert.equal((await request(`${s.simUrl}/v2/apps`, { method: 'POST', ...json(appDef({ id: '/prod/legacy' })) })).status, 201);
    const scale = await request(`${s.url}/v2/apps/prod/legacy`, { method: 'PUT', ...json({ instances: 3 }) });
    assert.equal(scale.status, 200, scale.body);
    const app = JSON.parse((await request(`${s.simUrl}/v2/apps/prod/legacy`)).body).app;
    assert.equal(app.instances, 3);
    assert.equal((await request(`${s.simUrl}/v2/pods/prod/legacy`)).status, 404);
  });

  it("a group: its pods injected (ids relative to the group), read back from Marathon; a new opted-in app in it refused at its path", async () => {
    const group = { id: '/team', pods: [podDef({ id: 'api' })], groups: [{ id: 'db', pods: [podDef({ id: 'pg', labels: {} })] }] };
    const res = await request(`${s.url}/v2/groups/team`, { method: 'PUT', ...json(group) });
    assert.equal(res.status, 200, res.body);
    const api = JSON.parse((await request(`${s.simUrl}/v2/pods/team/api`)).body);
    assert.equal(sidecarOf(api).environment.CITADEL_MARATHON_ID, '/team/api');
    assert.equal(sidecarOf(JSON.parse((await request(`${s.simUrl}/v2/pods/team/db/pg`)).body)), undefined);
    const refused = await request(`${s.url}/v2/groups`, { method: 'POST', ...json({ id: '/team2', apps: [appDef({ id: 'web' })] }) });
    assert.equal(refused.status, 422);
    assert.equal(JSON.parse(refused.body).details[0].path, '/apps(0)');
    assert.equal((await request(`${s.simUrl}/v2/groups/team2`)).status, 404);
  });
});

describe("refusals, in Marathon's format", () => {
  let s: Stack;
  before(async () => (s = await stack({ namespaces: new NamespaceMap([{ prefix: '/teams/payments', namespaces: { any: false, names: ['payments'] }, serviceAccounts: { any: false, names: ['api'] } }]) })));
  after(() => s.close());

  const refusedWith = async (method: string, url: string, body: unknown, details: Obj[]) => {
    const res = await request(`${s.url}${url}`, { method, ...json(body) });
    assert.equal(res.status, 422, res.body);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.body, JSON.stringify({ message: 'Object is not valid', details }));
  };

  it("a pod mounting another identity's SDS directory: 422 at the volume mount; Marathon never sees it", async () => {
    const pod = podDef({
      volumes: [{ name: 'steal', host: '/var/run/citadel/sds/prod/payments' }],
      containers: [...podDef().containers, { name: 'thief', resources: { cpus: 0.1, mem: 32 }, volumeMounts: [{ name: 'steal', mountPath: '/s' }] }],
    });
    await refusedWith('POST', '/v2/pods', pod, [{
      path: '/containers(1)/volumeMounts(0)',
      errors: ["volume \"steal\": host path /var/run/citadel/sds/prod/payments is the directory of identity prod/payments under /var/run/citadel/sds; this workload may mount only its own identity's directory /var/run/citadel/sds/prod/default (prod/default)"],
    }]);
    assert.equal(s.sim.state.pods.size, 0);
    // its own identity's directory is fine, injected or not
    const own = podDef({ id: '/prod/own', labels: {}, volumes: [{ name: 'mine', host: '/var/run/citadel/sds/prod/default' }], containers: [{ ...podDef().containers[0], volumeMounts: [{ name: 'mine', mountPath: '/m' }] }] });
    assert.equal((await request(`${s.url}/v2/pods`, { method: 'POST', ...json(own) })).status, 201);
  });

  it("apps: a hostPath under the certs directory, a Docker -v of the SDS directory, a parent of them; in a group, each at its path", async () => {
    await refusedWith('POST', '/v2/apps', appDef({ labels: {}, container: { type: 'MESOS', volumes: [{ containerPath: 'c', hostPath: '/var/lib/citadel/certs/kube/admin', mode: 'RO' }] } }), [{
      path: '/container/volumes(0)/hostPath',
      errors: ["host path /var/lib/citadel/certs/kube/admin is the directory of identity kube/admin under /var/lib/citadel/certs; this workload may mount only its own identity's directory /var/lib/citadel/certs/prod/default (prod/default)"],
    }]);
    await refusedWith('PUT', '/v2/groups/ops', { apps: [appDef({ id: 'a', labels: {}, container: { type: 'DOCKER', docker: { image: 'x', parameters: [{ key: 'volume', value: '/var/run/citadel/sds:/all' }] } } })], groups: [{ id: 'sub', apps: [appDef({ id: 'b', labels: {}, container: { type: 'MESOS', volumes: [{ containerPath: 'r', hostPath: '/var/run', mode: 'RO' }] } })] }] }, [
      { path: '/apps(0)/container/docker/parameters(0)/value', errors: ["docker volume: host path /var/run/citadel/sds holds /var/run/citadel/sds, the node agent's directory of every identity on the host; mount only your identity's directory /var/run/citadel/sds/ops/default"] },
      { path: '/groups(0)/apps(0)/container/volumes(0)/hostPath', errors: ["host path /var/run holds /var/run/citadel/sds, the node agent's directory of every identity on the host; mount only your identity's directory /var/run/citadel/sds/ops/default"] },
    ]);
    assert.equal(s.sim.state.apps.size, 0);
  });

  it('namespace and service-account claims: only what the path implies, or what the namespace map grants its prefix', async () => {
    await refusedWith('POST', '/v2/pods', podDef({ id: '/prod/sneaky', labels: { 'istio.io/namespace': 'kube-system' } }), [{
      path: '/labels/istio.io/namespace',
      errors: ['namespace "kube-system" may not be claimed by /prod/sneaky: its path allows "prod" (the namespace map has no entry for it); move it under a group of that namespace or ask for an entry in the namespace map'],
    }]);
    const granted = await request(`${s.url}/v2/pods`, { method: 'POST', ...json(podDef({ id: '/teams/payments/api', labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/namespace': 'payments', 'istio.io/service-account': 'api' } })) });
    assert.equal(granted.status, 201, granted.body);
    assert.equal(sidecarOf(JSON.parse(granted.body)).environment.CITADEL_SPIFFE_ID, 'spiffe://cluster.local/ns/payments/sa/api');
    await refusedWith('POST', '/v2/pods', podDef({ id: '/teams/payments/batch', labels: { 'istio.io/namespace': 'payments', 'istio.io/service-account': 'admin' } }), [{
      path: '/labels/istio.io/service-account',
      errors: ['service account "admin" may not be claimed by /teams/payments/batch: under /teams/payments the namespace map allows "api"'],
    }]);
  });

  it("the refusal has the shape of Marathon's own 422", async () => {
    const marathons = await request(`${s.simUrl}/v2/pods`, { method: 'POST', ...json(podDef({ id: '/prod/bad', labels: {}, containers: [{ name: 'Bad_Name', resources: { cpus: 0.1, mem: 32 } }] })) });
    assert.equal(marathons.status, 422);
    const ours = await request(`${s.url}/v2/pods`, { method: 'POST', ...json(podDef({ labels: { 'istio.io/namespace': 'x' } })) });
    const shape = (b: string) => {
      const j = JSON.parse(b);
      return { keys: Object.keys(j), message: j.message, detailKeys: j.details.map((d: Obj) => Object.keys(d)), errorsAreStrings: j.details.every((d: Obj) => d.errors.every((e: unknown) => typeof e === 'string')) };
    };
    assert.deepEqual(shape(ours.body), { ...shape(marathons.body), detailKeys: [['path', 'errors']] });
  });

  it('paths Marathon would resolve differently, bodies too large or encoded, JSON Marathon would guess at', async () => {
    for (const p of ['/v2/./pods', '/v2//pods', '/v2/%70ods', '/v2/pods;x=1', '/service/marathon/v2/pods']) {
      const res = await request(`${s.url}${p}`, { method: 'POST', ...json(podDef({ id: '/prod/path' })) });
      assert.equal(res.status, 400, p);
      assert.ok(JSON.parse(res.body).message, p);
    }
    const big = await new Promise<Answer>((resolve, reject) => {
      const req = http.request(`${s.url}/v2/pods`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': 11 * 1024 * 1024 } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c)).on('end', () => resolve({ status: res.statusCode!, statusMessage: '', headers: res.headers, rawHeaders: [], body }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(big.status, 413);
    assert.match(JSON.parse(big.body).message, /up to 10485760 bytes/);
    const gz = await request(`${s.url}/v2/pods`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' }, body: 'x' });
    assert.equal(gz.status, 415);
    const trailing = await request(`${s.url}/v2/pods`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: `${JSON.stringify(podDef({ id: '/prod/trail' }))} {}` });
    assert.equal(trailing.status, 400);
    assert.equal(JSON.parse(trailing.body).message, 'Invalid JSON');
    assert.equal(s.sim.state.pods.has('/prod/path') || s.sim.state.pods.has('/prod/trail'), false);
  });

  it('a chunked body over the limit is cut off with 413', async (t) => {
    const small = await stack({ proxy: { maxBodyBytes: 1000 } });
    t.after(() => small.close());
    const res = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${small.url}/v2/pods`, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (r) => {
        r.resume();
        resolve(r.statusCode!);
      });
      req.on('error', reject);
      req.write(`{"id":"/prod/x","labels":{"pad":"${'x'.repeat(1500)}`);
      // not ended: the proxy must answer without waiting for the rest
    });
    assert.equal(res, 413);
    assert.equal(small.sim.state.pods.size, 0);
  });
});

describe('passing through', () => {
  let s: Stack;
  before(async () => {
    s = await stack({ sim: { seed: 7 } });
    s.sim.seed(JSON.parse(readFileSync(path.join(sharedMarathonDir, 'group-dumps', '155_100.json'), 'utf8')));
  });
  after(() => s.close());

  it('GETs, with their query strings, answer byte for byte what Marathon answers directly (errors too)', async () => {
    const someApp = [...s.sim.state.apps.keys()][3];
    const label = Object.entries((s.sim.state.apps.get(someApp)!.def.labels ?? {}) as Obj)[0];
    const paths = [
      '/v2/groups', '/v2/groups?embed=group.apps&embed=group.apps.tasks', `/v2/apps?embed=apps.tasks&embed=apps.counts`, `/v2/apps?label=${encodeURIComponent(label ? `${label[0]}==${label[1]}` : 'x')}`,
      `/v2/apps${someApp}`, `/v2/apps${someApp}/tasks`, '/v2/tasks?status=running', '/v2/pods', '/v2/info', '/v2/leader', '/ping', '/v2/apps/no/such/app', '/v2/groups/nope', '/nowhere',
    ];
    for (const p of paths) {
      const direct = await request(`${s.simUrl}${p}`);
      const proxied = await request(`${s.url}${p}`);
      assert.equal(proxied.status, direct.status, p);
      assert.equal(proxied.body, direct.body, p);
      assert.deepEqual(endToEnd(proxied), endToEnd(direct), p);
    }
  });

  it("status codes and bodies of Marathon's errors on writes pass unchanged", async () => {
    const pod = podDef({ id: '/errs/dup', labels: {} });
    assert.equal((await request(`${s.url}/v2/pods`, { method: 'POST', ...json(pod) })).status, 201);
    const cases: Array<[string, string, unknown]> = [
      ['POST', '/v2/pods', pod], // 409 already exists
      ['PUT', '/v2/pods/errs/other', pod], // 400 id mismatch
      ['POST', '/v2/pods', podDef({ id: '/errs/bad', labels: {}, containers: [{ name: 'Bad_Name', resources: { cpus: 0.1, mem: 32 } }] })], // 422 Marathon's validation
      ['DELETE', '/v2/apps/errs/none', undefined], // 404
      ['POST', '/v2/pods', ''], // 400 empty body
      ['PUT', '/v2/pods', pod], // 405
    ];
    for (const [method, p, body] of cases) {
      const opts = body === undefined ? { method } : { method, headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) };
      const direct = await request(`${s.simUrl}${p}`, opts);
      const proxied = await request(`${s.url}${p}`, opts);
      assert.ok(direct.status >= 400, `${method} ${p}: ${direct.status}`);
      assert.equal(proxied.status, direct.status, `${method} ${p}`);
      assert.equal(proxied.body, direct.body, `${method} ${p}`);
    }
  });

  it('a dry run keeps its query string: Marathon plans and changes nothing', async () => {
    const group = { id: '/dry', pods: [podDef({ id: 'api' })] };
    const res = await request(`${s.url}/v2/groups/dry?dryRun=true`, { method: 'PUT', ...json(group) });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body).steps[0].actions, [{ action: 'StartPod', pod: '/dry/api' }]);
    assert.equal(s.sim.state.pods.has('/dry/api'), false);
  });
});

describe('credentials', () => {
  let s: Stack;
  const auth = { Authorization: `Basic ${Buffer.from('ops:secret').toString('base64')}` };
  before(async () => (s = await stack({ sim: { credentials: 'ops:secret' }, injectByDefault: true, convertApps: true })));
  after(() => s.close());

  it("pass to Marathon as the client sent them: 401 with Marathon's challenge without, the write injected with them", async () => {
    const denied = await request(`${s.url}/v2/apps`);
    const deniedDirect = await request(`${s.simUrl}/v2/apps`);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['www-authenticate'], 'basic realm="Mesosphere"');
    assert.equal(denied.body, deniedDirect.body);
    const write = await request(`${s.url}/v2/pods`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify(podDef()) });
    assert.equal(write.status, 201, write.body);
    assert.ok(sidecarOf(JSON.parse(write.body)));
    assert.equal((await request(`${s.url}/v2/pods`, { method: 'POST', ...json(podDef({ id: '/prod/anon' })) })).status, 401);
  });

  it("the proxy's own lookup (does Marathon have this app?) goes with the client's credentials, and Marathon's refusal of them comes back", async () => {
    assert.equal((await request(`${s.simUrl}/v2/apps`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify(appDef({ id: '/prod/old' })) })).status, 201);
    const anon = await request(`${s.url}/v2/apps/prod/old`, { method: 'PUT', ...json({ instances: 2 }) });
    assert.equal(anon.status, 401);
    assert.equal(anon.headers['www-authenticate'], 'basic realm="Mesosphere"');
    const scaled = await request(`${s.url}/v2/apps/prod/old`, { method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ instances: 2 }) });
    assert.equal(scaled.status, 200, scaled.body);
    assert.equal(s.sim.state.apps.get('/prod/old')!.def.instances, 2);
  });
});

describe('headers, connections and redirects (an echoing upstream)', () => {
  let upstream: http.Server;
  let upstreamUrl: string;
  let connections = 0;
  let seen: { url: string; rawHeaders: string[]; body: string }[] = [];
  let proxy: AdmissionProxy;
  let url: string;
  let streams: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;

  before(async () => {
    upstream = http.createServer((req, res) => {
      if (req.url!.includes('/v2/events')) return streams?.(req, res);
      let body = '';
      req.on('data', (c) => (body += c)).on('end', () => {
        seen.push({ url: req.url!, rawHeaders: req.rawHeaders, body });
        if (req.url!.endsWith('/redirect')) {
          res.writeHead(302, { Location: 'http://leader.example:8080/v2/events?x=1', 'Content-Length': 0 });
          res.end();
          return;
        }
        res.writeHead(299, 'Odd But Fine', ['Connection', 'X-Resp-Hop', 'X-Resp-Hop', 'dropped', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Marathon-Leader', 'http://m:8080', 'Content-Type', 'text/plain']);
        res.end('echo');
      });
    });
    upstream.on('connection', () => connections++);
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    proxy = new AdmissionProxy({
      marathon: `${upstreamUrl}/service/marathon/`,
      policy: { inject: injectConfig(), convertApps: false, directories: new IdentityDirectories(['/var/run/citadel/sds']), namespaces: new NamespaceMap() },
    });
    url = await proxy.listen(0);
  });
  after(async () => {
    await proxy.close();
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  it('end-to-end headers arrive exactly (Accept, Authorization, duplicates); hop-by-hop ones stop; X-Forwarded-For is appended; the path prefix and query are kept', async () => {
    seen = [];
    const res = await request(`${url}/v2/apps?embed=apps.tasks&embed=apps.counts`, {
      headers: ['Accept', 'text/event-stream', 'Authorization', 'token=abc.def', 'X-Dup', '1', 'X-Dup', '2', 'Connection', 'X-Hop', 'X-Hop', 'secret', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Proxy-Authorization', 'Basic x', 'X-Forwarded-For', '10.1.2.3'],
    });
    assert.equal(res.status, 299);
    assert.equal(res.statusMessage, 'Odd But Fine');
    assert.equal(res.body, 'echo');
    assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(res.headers['x-marathon-leader'], 'http://m:8080');
    assert.equal(res.headers['x-resp-hop'], undefined, 'a header the Connection header names stops at the proxy');
    const [got] = seen;
    assert.equal(got.url, '/service/marathon/v2/apps?embed=apps.tasks&embed=apps.counts');
    const pairs: string[][] = [];
    for (let i = 0; i < got.rawHeaders.length; i += 2) pairs.push([got.rawHeaders[i], got.rawHeaders[i + 1]]);
    const named = (n: string) => pairs.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
    assert.deepEqual(named('accept'), ['text/event-stream']);
    assert.deepEqual(named('authorization'), ['token=abc.def']);
    assert.deepEqual(named('x-dup'), ['1', '2']);
    for (const hop of ['x-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.deepEqual(named(hop), [], hop);
    assert.deepEqual(named('x-forwarded-for'), ['10.1.2.3, 127.0.0.1']);
    assert.deepEqual(named('host'), [upstreamUrl.replace('http://', '')]);
  });

  it("keeps connections to Marathon alive and reuses them; a 302's Location passes as Marathon wrote it", async () => {
    for (let i = 0; i < 5; i++) assert.equal((await request(`${url}/v2/info`)).status, 299);
    assert.equal(connections, 1, 'every request so far (six, each on a client connection of its own) went over one pooled connection');
    const res = await request(`${url}/redirect`);
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, 'http://leader.example:8080/v2/events?x=1');
  });

  it("an event stream's head reaches the client before any event, each event before the next, and its end", async () => {
    let writeEvent: (() => void) | undefined;
    let endStream: (() => void) | undefined;
    const opened = new Promise<void>((resolve) => {
      streams = (req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream;charset=utf-8' });
        res.flushHeaders();
        writeEvent = () => res.write('event: x\r\ndata: {}\r\n\r\n');
        endStream = () => res.end();
        resolve();
      };
    });
    const sub = subscribe(`${url}/v2/events`);
    await opened;
    await waitFor('the head through the proxy, with no event sent yet', () => sub.state.status === 200);
    assert.equal(sub.state.text, '', 'the head came alone');
    writeEvent!();
    await waitFor('the event', () => sub.state.events.length === 1);
    writeEvent!();
    await waitFor('the second event', () => sub.state.events.length === 2);
    endStream!();
    await waitFor('the end of the stream', () => sub.state.ended);
  });

  it('502 in Marathon\'s format when Marathon cannot be reached', async (t) => {
    const dead = new AdmissionProxy({ marathon: 'http://127.0.0.1:1', policy: { inject: injectConfig(), convertApps: false, directories: new IdentityDirectories([]), namespaces: new NamespaceMap() } });
    const at = await dead.listen(0);
    t.after(() => dead.close());
    const res = await request(`${at}/v2/apps`);
    assert.equal(res.status, 502);
    assert.match(JSON.parse(res.body).message, /could not reach Marathon at http:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
  });
});

describe('a kept-alive connection Marathon closed as the request went out', () => {
  it('a request without a streamed body is sent again on a new connection; a streamed one is answered 502', async (t) => {
    // every second request on a connection finds it reset, as when Marathon closes an idle one just then
    const upstream = http.createServer((req, res) => {
      const sock = req.socket as typeof req.socket & { served?: number };
      sock.served = (sock.served ?? 0) + 1;
      req.resume();
      req.on('end', () => {
        if (sock.served === 2) sock.destroy();
        else res.end(`ok ${req.method}`);
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const proxy = new AdmissionProxy({ marathon: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, policy: { inject: injectConfig(), convertApps: false, directories: new IdentityDirectories([]), namespaces: new NamespaceMap() } });
    const url = await proxy.listen(0);
    t.after(async () => {
      await proxy.close();
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
    });
    // one pooled connection at a time: each second request on it is reset
    assert.equal((await request(`${url}/v2/info`)).body, 'ok GET');
    assert.equal((await request(`${url}/v2/info`)).body, 'ok GET', 'reset, then sent again on a fresh connection');
    assert.equal((await request(`${url}/v2/pods`, { method: 'POST', ...json(podDef({ labels: {} })) })).body, 'ok POST', 'a body the proxy read is sent again too');
    const streamed = await request(`${url}/v2/tasks/delete`, { method: 'POST', ...json({ ids: ['a'] }) });
    assert.equal(streamed.status, 502, 'a streamed body is gone: not sent twice');
    assert.equal((await request(`${url}/v2/tasks/delete`, { method: 'POST', ...json({ ids: ['b'] }) })).body, 'ok POST');
  });
});

describe('a standby Marathon behind the proxy', () => {
  it('its 302 of /v2/events to the leader reaches the client as it is; a write it proxies to the leader arrives there injected', async (t) => {
    const leader = new MarathonSimulator();
    const leaderUrl = await leader.listen();
    const standby = new MarathonSimulator({ standbyOf: leaderUrl });
    const standbyUrl = await standby.listen();
    const proxy = new AdmissionProxy({ marathon: standbyUrl, policy: { inject: injectConfig(), convertApps: false, directories: new IdentityDirectories(['/var/run/citadel/sds']), namespaces: new NamespaceMap() } });
    const url = await proxy.listen(0);
    t.after(async () => {
      await proxy.close();
      await standby.close();
      await leader.close();
    });
    const events = await request(`${url}/v2/events?event_type=pod_created_event`, { headers: { Accept: 'text/event-stream' } });
    assert.equal(events.status, 302);
    assert.equal(events.headers.location, `${leaderUrl}/v2/events?event_type=pod_created_event`);
    const write = await request(`${url}/v2/pods`, { method: 'POST', ...json(podDef()) });
    assert.equal(write.status, 201, write.body);
    assert.ok(write.headers['x-marathon-via'], 'answered by the standby on behalf of the leader');
    assert.ok(sidecarOf(leader.state.pods.get('/prod/api')!.def));
  });
});

/** A subscription to /v2/events: the raw text as it arrives, the parsed events, and how it ended. */
function subscribe(url: string, accept = 'text/event-stream') {
  const state = { status: 0, contentType: '', text: '', events: [] as ServerSentEvent[], ended: false, req: undefined as http.ClientRequest | undefined };
  const parser = new SseParser((e) => state.events.push(e));
  const opened = new Promise<void>((resolve, reject) => {
    // an answer held back must fail the test, not hang it
    setTimeout(() => reject(new Error(`${url}: no answer head within 5 s`)), 5000).unref();
    const req = http.get(url, { headers: { Accept: accept }, agent: false }, (res) => {
      state.status = res.statusCode!;
      state.contentType = String(res.headers['content-type']);
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        state.text += c;
        parser.push(c);
      });
      const end = () => (state.ended = true);
      res.on('end', end).on('close', end).on('error', end);
      resolve();
    });
    req.on('error', (err) => {
      state.ended = true;
      reject(err);
    });
    state.req = req;
  });
  return { state, opened };
}

describe('/v2/events through the proxy', () => {
  let s: Stack;
  before(async () => (s = await stack()));
  after(() => s.close());

  it('delivers the same bytes as Marathon, each event as it is sent (no heartbeat or later event needed to push it out)', async () => {
    const direct = subscribe(`${s.simUrl}/v2/events`);
    const proxied = subscribe(`${s.url}/v2/events`);
    await Promise.all([direct.opened, proxied.opened]);
    assert.equal(proxied.state.status, 200);
    assert.equal(proxied.state.contentType, 'text/event-stream;charset=utf-8');
    await waitFor('the attach event through the proxy', () => proxied.state.events.some((e) => e.event === 'event_stream_attached'));
    const mark = { direct: direct.state.text.length, proxied: proxied.state.text.length };
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(`${s.simUrl}/v2/pods`, { method: 'POST', ...json(podDef({ id: `/ev/p${i}`, labels: {} })) })).status, 201);
      // one change, then silence: the proxy must already have passed its events on
      await waitFor(`pod_created_event ${i} through the proxy`, () => proxied.state.events.filter((e) => e.event === 'pod_created_event').length === i + 1, 3000);
    }
    await waitFor('the same bytes on both streams', () => direct.state.text.slice(mark.direct) === proxied.state.text.slice(mark.proxied) && direct.state.text.length > mark.direct);
    assert.ok(proxied.state.events.filter((e) => e.event === 'status_update_event').length >= 3);
    direct.state.req!.destroy();
    proxied.state.req!.destroy();
    await waitFor('Marathon to see both subscribers gone', () => s.sim.subscriberCount() === 0);
  });

  it("keeps filters, and Marathon's 405 for any Accept but exactly text/event-stream", async () => {
    // with the attach event in the filter: the simulator sends a stream's head with its first bytes
    const filtered = subscribe(`${s.url}/v2/events?event_type=event_stream_attached&event_type=pod_deleted_event`);
    await filtered.opened;
    assert.equal((await request(`${s.simUrl}/v2/pods/ev/p0`, { method: 'DELETE' })).status, 202);
    await waitFor('the pod_deleted_event', () => filtered.state.events.length === 2);
    assert.deepEqual(filtered.state.events.map((e) => e.event), ['event_stream_attached', 'pod_deleted_event']);
    filtered.state.req!.destroy();
    for (const accept of ['text/event-stream, */*', 'application/json']) {
      const direct = await request(`${s.simUrl}/v2/events`, { headers: { Accept: accept } });
      const proxied = await request(`${s.url}/v2/events`, { headers: { Accept: accept } });
      assert.equal(direct.status, 405);
      assert.equal(proxied.status, 405);
      assert.equal(proxied.body, direct.body);
    }
  });

  it('ends when Marathon ends it, as Marathon leaving does', async () => {
    const proxied = subscribe(`${s.url}/v2/events`);
    await proxied.opened;
    await waitFor('the subscription in Marathon', () => s.sim.subscriberCount() === 1);
    s.sim.dropEventStreams();
    await waitFor('the stream through the proxy to end', () => proxied.state.ended);
  });
});

describe('citadel admission-proxy', () => {
  const main = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const run = (args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, [main, 'admission-proxy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('exit', (code) => resolve({ code, out, err }));
  });

  it('serves with the flags: converts apps, reads the inject config and the namespace map; stops on SIGTERM', async (t) => {
    const sim = new MarathonSimulator();
    const simUrl = await sim.listen();
    t.after(() => sim.close());
    const dir = tempDir();
    const config = path.join(dir, 'inject.json');
    writeFileSync(config, JSON.stringify({ namespaces: { shop: { inject: true } } }));
    const map = path.join(dir, 'namespaces.yaml');
    writeFileSync(map, '/shop:\n  - shop\n  - shop-canary\n');
    const child = spawn(process.execPath, [main, 'admission-proxy', '--marathon', simUrl, '--listen', '127.0.0.1:0', '--convert-apps', '--inject-config', config, '--namespace-map', map, '--sds-dir', '/srv/sds', '--log-format', 'text'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    t.after(() => child.kill('SIGKILL'));
    const url = await waitFor('the listening line', () => /admission-proxy listening on (\S+) -> /.exec(out)?.[1], 10_000);
    const res = await request(`${url}/v2/apps`, { method: 'POST', ...json(appDef({ id: '/shop/cart', labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/namespace': 'shop-canary' } })) });
    assert.equal(res.status, 201, `${res.body} ${err}`);
    const pod = JSON.parse((await request(`${simUrl}/v2/pods/shop/cart`)).body);
    assert.equal(pod.volumes.find((v: Obj) => v.name === 'citadel-identity').host, '/srv/sds/shop-canary/default');
    const stolen = await request(`${url}/v2/pods`, { method: 'POST', ...json(podDef({ id: '/shop/x', volumes: [{ name: 'v', host: '/var/run/citadel/sds/kube/admin' }] })) });
    assert.equal(stolen.status, 422, 'the default SDS directory stays guarded beside --sds-dir');
    child.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    assert.match(err, /admitted.*\/shop\/cart/);
  });

  it('refuses bad flags with one line and exit code 2', async () => {
    const dir = tempDir();
    const badMap = path.join(dir, 'map.json');
    writeFileSync(badMap, '{"prod": ["prod"]}');
    for (const [args, message] of [
      [['--marathon', 'http://u:p@127.0.0.1:8080'], /--marathon: the URL must not carry user:password/],
      [['--marathon', 'http://a:8080,http://b:8080'], /--marathon: the admission proxy forwards to one Marathon URL/],
      [['--marathon', 'marathon:8080'], /--marathon: "marathon:8080" must be http:\/\/ or https:\/\//],
      [['--listen', 'nowhere'], /--listen: "nowhere" is not host:port/],
      [['--namespace-map', badMap], /map\.json: \/prod: "prod" must be an absolute Marathon path/],
      [['--namespace-map', path.join(dir, 'missing.json')], /namespace map .*missing\.json: no such file/],
      [['--sds-dir', 'relative'], /--sds-dir: "relative" must be an absolute path/],
    ] as Array<[string[], RegExp]>) {
      const r = await run(['--listen', '127.0.0.1:0', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, message);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
    }
  });
});
