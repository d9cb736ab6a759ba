/**
 * The whole mesh, end to end, as users run it: two pod definitions posted through `citadel
 * admission-proxy` into the Marathon simulator (tasks on one host, container IPs in 127.0.1.0/24
 * so that local Envoys can bind them), `citadel server`, and `citadel agent --sds-dir` on that
 * host serving both identities (SDS and the xds socket). Each sidecar runs as a local process with
 * a real Envoy, started from the injected definition as read back from the simulator.
 *
 * No containers here, so the test does what the Mesos agent would do for the `istio-proxy`
 * container: it runs the container's shell command with `envoy` on PATH and the environment Mesos
 * gives (the pod's and container's environment, MESOS_CONTAINER_IP = the instance's container IP,
 * MESOS_TASK_ID = `<instance id>.istio-proxy`), and it resolves the volume mount as the mount
 * would: the command refers to /var/run/secrets/workload-spiffe-uds (the mountPath), which in a
 * container would show the volume's host path, the agent's `<sds-dir>/<ns>/<sa>`; without a mount
 * namespace the command is given that host path in place of the mountPath
 * (src/cli/demo/container-launch.ts). Both Envoys share this host's 127.0.0.1, so their admin
 * ports (15000 in the bootstrap by default) would collide: the inject config gives each namespace
 * its own `adminPort`, which the injected bootstrap carries. The apps listen on 127.0.0.1 (explicit
 * capture): B's is an HTTP server here; A's is this test, calling A's upstream port.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, it } from 'node:test';
import { containerLaunchOf } from '../../src/cli/demo/container-launch';
import { EnvoySidecar } from '../../src/cli/demo/envoy-sidecar';
import type { JsonObject } from '../../src/common/json';
import { startAdmissionProxyProcess, type AdmissionProxyProcess } from '../helpers/admission-proxy';
import { startCitadelServer, type CitadelServerProcess } from '../helpers/citadel-server';
import { describeWithEnvoy, envoyBinary } from '../helpers/envoy';
import { startMarathonSimProcess, type MarathonSimProcess } from '../helpers/marathon-sim';
import { tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';

const MAIN = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
const HOST = 'node-1';
const A_ID = 'spiffe://cluster.local/ns/web/sa/storefront';
const B_ID = 'spiffe://cluster.local/ns/shop/sa/catalog';

function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

type Answer = { status: number; body: string } | { error: string };

/** One GET on a new connection (a pooled one could outlive a policy change). */
function get(host: string, port: number, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', headers, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
  });
}

const pod = (id: string, sa: string, labels: Record<string, string>, endpoints: JsonObject[]): JsonObject => ({
  id,
  labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': sa, ...labels },
  containers: [{ name: 'app', resources: { cpus: 0.1, mem: 32 }, exec: { command: { shell: `node ${sa}.js` } }, endpoints }],
  networks: [{ mode: 'container', name: 'dcos' }],
});

describeWithEnvoy('the whole mesh: definitions injected through the admission proxy, run with real Envoys', () => {
  const dir = tempDir('citadel-e2e-mesh-');
  const sdsDir = path.join(dir, 'sds');
  const store = `file:${path.join(dir, 'data')}`;
  let sim: MarathonSimProcess;
  let server: CitadelServerProcess;
  let agent: ChildProcess;
  let agentLog = '';
  let proxy: AdmissionProxyProcess;
  const envoys: EnvoySidecar[] = [];
  const seen: Array<{ xfcc?: string }> = [];
  let app: http.Server;
  const ports = { b: 0, upstream: 0, adminA: 0, adminB: 0 };
  let bIp = '';
  let posted: Array<{ status: number; body: JsonObject }> = [];

  before(async () => {
    ports.b = await freePort();
    ports.upstream = await freePort();
    ports.adminA = await freePort();
    ports.adminB = await freePort();
    sim = await startMarathonSimProcess(['--agents', HOST, '--container-network-cidr', '127.0.1.0/24']);
    server = await startCitadelServer(['--marathon', sim.url, '--store', store, '--log-level', 'info']);

    const token = spawnSync(process.execPath, [MAIN, 'token', 'create', '--host', HOST, '--store', store], { encoding: 'utf8' });
    assert.equal(token.status, 0, token.stderr);
    const rootFile = path.join(dir, 'data', 'ca', 'istio-ca-secret', 'ca-cert.pem');
    agent = spawn(process.execPath, [
      MAIN, 'agent', '--host', HOST, '--sds-dir', sdsDir, '--ca-address', `127.0.0.1:${server.grpcPort}`, '--ca-root', rootFile,
      '--join-token', token.stdout.trim(), '--xds-address', `127.0.0.1:${server.xdsPort}`, '--monitoring-port', '0', '--log-format', 'text',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    agent.stderr!.setEncoding('utf8').on('data', (c: string) => (agentLog = (agentLog + c).slice(-20_000)));

    // each namespace's sidecar gets its own admin port (two Envoys on one host)
    const injectConfig = path.join(dir, 'inject.json');
    writeFileSync(injectConfig, JSON.stringify({ namespaces: { web: { adminPort: ports.adminA }, shop: { adminPort: ports.adminB } } }));
    proxy = await startAdmissionProxyProcess(sim.url, ['--inject-config', injectConfig, '--sds-dir', sdsDir]);
    const definitions = [
      pod('/shop/catalog', 'catalog', {}, [{ name: 'http', containerPort: ports.b }]),
      pod('/web/storefront', 'storefront', { 'citadel.io/upstreams': `/shop/catalog:${ports.upstream}` }, []),
    ];
    posted = [];
    for (const d of definitions) {
      const res = await fetch(`${proxy.url}/v2/pods`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d) });
      posted.push({ status: res.status, body: (await res.json()) as JsonObject });
    }

    app = http.createServer((req, res) => {
      const xfcc = req.headers['x-forwarded-client-cert'];
      seen.push(xfcc === undefined ? {} : { xfcc: String(xfcc) });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ app: 'catalog', xfcc: xfcc ?? null }));
    });
    await new Promise<void>((resolve) => app.listen(ports.b, '127.0.0.1', resolve));
  });

  after(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent.once('exit', r));
    }
    await proxy?.stop();
    await server?.stop();
    await sim?.stop();
    await new Promise((r) => (app ? app.close(r) : r(undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  it('the admission proxy stored both pods with the sidecar, mounting each identity’s SDS directory of the agent', async () => {
    for (const [i, [id, ns, sa]] of [['/shop/catalog', 'shop', 'catalog'], ['/web/storefront', 'web', 'storefront']].entries()) {
      assert.equal(posted[i].status, 201, JSON.stringify(posted[i].body));
      const stored = (await (await fetch(`${sim.url}/v2/pods${id}`)).json()) as { containers: Array<{ name: string }>; volumes: Array<{ host?: string }> };
      assert.deepEqual(stored.containers.map((c) => c.name), ['app', 'istio-proxy']);
      assert.deepEqual(stored.volumes.map((v) => v.host), [path.join(sdsDir, ns, sa)]);
    }
  });

  it('the sidecars, run from the injected definitions, get their identities from the agent and their configuration over xDS', async () => {
    await waitFor('the agent to serve both identities (SDS and xds sockets)', () =>
      ['shop/catalog', 'web/storefront'].every((d) => existsSync(path.join(sdsDir, d, 'socket')) && existsSync(path.join(sdsDir, d, 'xds'))), { timeoutMs: 20_000 }).catch((err) => {
      throw new Error(`${(err as Error).message}\nagent log:\n${agentLog.slice(-3000)}`);
    });
    for (const [id, adminPort] of [['/shop/catalog', ports.adminB], ['/web/storefront', ports.adminA]] as const) {
      const status = await (await fetch(`${sim.url}/v2/pods${id}::status`)).json();
      const launch = containerLaunchOf(status as JsonObject, 'istio-proxy');
      assert.equal(launch.agentHostname, HOST);
      assert.match(launch.containerIp, /^127\.0\.1\.\d+$/);
      assert.ok(!launch.shell.includes('/var/run/secrets/workload-spiffe-uds'), 'the mount path is resolved to the host path');
      if (id === '/shop/catalog') bIp = launch.containerIp;
      const workDir = path.join(dir, `sidecar-${id.split('/').pop()}`);
      envoys.push(await EnvoySidecar.start({ name: id, envoy: envoyBinary()!, command: { shell: launch.shell }, env: launch.env, adminPort, workDir }));
    }
    const [b, a] = envoys;
    const info = JSON.parse(await b.admin('/server_info')) as { node: { id: string; metadata: Record<string, string> } };
    assert.match(info.node.id, new RegExp(`^sidecar~${bIp.replace(/\./g, '\\.')}~shop_catalog\\.instance-[^~]+\\.istio-proxy$`));
    assert.equal(info.node.metadata.CITADEL_SPIFFE_ID, B_ID);
    await b.waitForListener(`inbound|${bIp}|${ports.b}`);
    await a.waitForListener(`outbound|127.0.0.1|${ports.upstream}`);
    // the certificates Envoy holds came over SDS from the agent: each its own identity
    const certs = JSON.parse(await a.admin('/certs')) as { certificates: Array<{ cert_chain: Array<{ subject_alt_names: Array<{ uri?: string }> }> }> };
    assert.deepEqual([...new Set(certs.certificates.flatMap((c) => c.cert_chain.flatMap((x) => x.subject_alt_names.map((s) => s.uri))))], [A_ID]);
  });

  it('before any policy (PERMISSIVE), plaintext straight to B’s inbound port reaches B’s app', async () => {
    assert.ok(bIp, 'the sidecars run');
    const r = await get(bIp, ports.b, { 'x-forwarded-client-cert': 'By=forged;URI=spiffe://evil/ns/x/sa/y' });
    assert.ok('status' in r && r.status === 200, JSON.stringify(r));
    assert.deepEqual(JSON.parse(r.body), { app: 'catalog', xfcc: null }, 'a plaintext caller’s forged XFCC is removed');
  });

  it('under STRICT (citadel policy apply), A’s app calls B over mTLS and B’s app sees A’s SPIFFE ID; plaintext to B’s inbound port is refused', async () => {
    assert.ok(bIp, 'the sidecars run');
    const policy = path.join(dir, 'strict.yaml');
    writeFileSync(policy, 'apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n');
    const applied = spawnSync(process.execPath, [MAIN, 'policy', 'apply', '-f', policy, '--store', store], { encoding: 'utf8' });
    assert.equal(applied.status, 0, applied.stderr);
    assert.match(applied.stdout, /peerauthentication istio-system\/default created/i);

    const [b] = envoys;
    await waitFor('plaintext to B’s inbound port to be refused', async () => 'error' in (await get(bIp, ports.b)), { timeoutMs: 10_000 }).catch((err) => {
      throw new Error(`${(err as Error).message}\n${b.logTail(20)}`);
    });
    const before = seen.length;
    const refused = await get(bIp, ports.b);
    assert.ok('error' in refused, JSON.stringify(refused));
    assert.equal(seen.length, before, 'a refused request never reaches B’s app');

    const r = await get('127.0.0.1', ports.upstream, { 'x-forwarded-client-cert': 'By=forged;URI=spiffe://evil/ns/x/sa/y' });
    assert.ok('status' in r && r.status === 200, JSON.stringify(r));
    const xfcc = (JSON.parse(r.body) as { xfcc: string }).xfcc;
    assert.match(xfcc, new RegExp(`^By=${B_ID.replace(/[/.]/g, '\\$&')};Hash=[0-9a-f]{64};URI=${A_ID.replace(/[/.]/g, '\\$&')}$`));
    assert.ok((await b.stat(`listener.${bIp}_${ports.b}.ssl.handshake`)) >= 1, 'B’s Envoy completed a TLS handshake on its inbound port');
  });
});
