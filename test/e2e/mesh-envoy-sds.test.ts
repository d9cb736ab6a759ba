/**
 * Two Envoy sidecars configured only by citadel's xDS, certificates over SDS from the node agent:
 * /shop/client (A) calls /shop/server (B) through A's outbound listener. The Marathon simulator,
 * `citadel server` and `citadel agent --sds-dir --xds-address` are real processes; the Envoys
 * start from `citadel envoy-bootstrap --mode sds` with `--service-node` as the injected command
 * sets it, and reach xDS and SDS only through the agent's per-identity sockets. Policy goes in
 * with `citadel policy apply` while the Envoys run: STRICT, PERMISSIVE, DISABLE, same pids.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, it } from 'node:test';
import { describeWithEnvoy, startEnvoy, type EnvoyProcess } from '../helpers/envoy';
import { bundleFor, testCa } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { freePort, httpGet, httpsGet, MeshCluster, meshApp, meshWide, ok, serialOf, startBackend, timeUntil, type BackendRequest, type Outcome, type Task } from '../helpers/mesh-cluster';

const CLIENT = { namespace: 'shop', serviceAccount: 'client' };
const SERVER = { namespace: 'shop', serviceAccount: 'server' };
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/server';
describeWithEnvoy('mesh end to end: Envoy sidecars in SDS mode, configured by citadel xDS', () => {
  let cluster: MeshCluster;
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let a: EnvoyProcess;
  let b: EnvoyProcess;
  let serverTask: Task;
  const ports = { server: 0, client: 0, local: 0 };
  const pids: number[] = [];
  const probeDir = () => path.join(cluster.dir, 'probe');
  let probe: { certChainPem: string; keyPem: string; rootCertPem: string };
  const foreign = bundleFor(testCa(), 'shop', 'client');
  const foreignCred = { certChainPem: foreign.certChainPem, keyPem: foreign.keyPem, rootCertPem: foreign.rootCertPem };

  /** A -> B through both sidecars: the app calls its outbound listener. */
  const viaSidecars = () => httpGet('127.0.0.1', ports.local);
  /** Straight to B's inbound listener, no sidecar on the caller's side. */
  const plaintextToB = () => httpGet(serverTask.ip, ports.server);
  const mtlsToB = (cred = probe) => httpsGet(serverTask.ip, ports.server, cred);
  /** What B's app saw of the last request, if the last outcome reached it. */
  async function seenBy(call: () => Promise<Outcome>): Promise<{ outcome: Outcome; seen?: BackendRequest }> {
    const before = backend.seen.length;
    const outcome = await call();
    return { outcome, ...(backend.seen.length > before && { seen: backend.seen[backend.seen.length - 1] }) };
  }

  /** Applies a mesh-wide mode and measures the time until `flipped` holds, from apply's exit and from its start. */
  async function flip(mode: 'STRICT' | 'PERMISSIVE' | 'DISABLE', flipped: () => Promise<boolean>): Promise<{ fromExit: number; fromStart: number }> {
    const apply = cluster.applyPolicy(`mesh-${mode.toLowerCase()}`, meshWide(mode));
    const seen = waitFor(`the Envoys to follow ${mode}`, async () => (await flipped()) && Date.now(), { timeoutMs: 20_000, intervalMs: 10 });
    const [{ exitedAt }, at] = await Promise.all([apply.done, seen]);
    return { fromExit: at - exitedAt, fromStart: at - apply.startedAt };
  }

  before(async () => {
    cluster = await MeshCluster.start({ sds: true });
    ports.server = await freePort();
    ports.client = await freePort();
    ports.local = await freePort();
    await cluster.deploy(meshApp('/shop/server', 'server', ports.server));
    await cluster.deploy(meshApp('/shop/client', 'client', ports.client, { labels: { 'citadel.io/upstreams': `/shop/server:${ports.local}` } }));
    [serverTask] = await cluster.running('/shop/server');
    const [clientTask] = await cluster.running('/shop/client');
    await cluster.identityReady(SERVER);
    await cluster.identityReady(CLIENT);
    backend = await startBackend(ports.server, 'server');
    const issued = cluster.citadel('cert', 'issue', '-n', 'shop', '-s', 'probe', '-o', probeDir(), '--store', cluster.store);
    assert.equal(issued.code, 0, issued.err);
    const read = (f: string) => readFileSync(path.join(probeDir(), f), 'utf8');
    probe = { certChainPem: read('cert-chain.pem'), keyPem: read('key.pem'), rootCertPem: read('root-cert.pem') };

    const sidecar = async (service: string, sa: string, task: Task) => {
      const yaml = cluster.bootstrap('envoy-bootstrap', `${sa}.yaml`, ['--service', service, '--service-account', sa, '--mode', 'sds', '--socket-dir', cluster.socketDir({ namespace: 'shop', serviceAccount: sa })]);
      return startEnvoy({ config: yaml, extraArgs: ['--service-node', `sidecar~${task.ip}~${task.id}`] });
    };
    b = await sidecar('/shop/server', 'server', serverTask);
    a = await sidecar('/shop/client', 'client', clientTask);
    pids.push(a.pid!, b.pid!);
    // No policy yet: Istio's default, PERMISSIVE. Both sidecars have their listeners from xDS.
    await a.waitFor('A to call B', async () => ok(await viaSidecars()) || undefined, 15_000);
  });

  it('the sidecars hold the certificates the agent made for them, from SDS, and the citadel root', async () => {
    for (const [envoy, id] of [[a, CLIENT_ID], [b, SERVER_ID]] as const) {
      const secrets = await envoy.configDump<{ configs: Array<{ dynamic_active_secrets?: Array<{ name: string }> }> }>('?resource=dynamic_active_secrets');
      assert.deepEqual(secrets.configs.map((s) => (s as { name: string }).name).sort(), ['ROOTCA', 'default']);
      const certs = await envoy.certs();
      assert.ok(certs.certificates.length >= 1);
      for (const c of certs.certificates) {
        assert.deepEqual(c.cert_chain[0].subject_alt_names, [{ uri: id }]);
        assert.equal(c.ca_cert[0].serial_number, serialOf(cluster.rootPem));
      }
    }
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await backend?.close();
    await cluster?.close();
  });

  it('STRICT: A -> B over mTLS with A’s SPIFFE ID at B’s app; plaintext and another root’s certificate refused', async (t) => {
    assert.ok(ok(await plaintextToB()), 'plaintext works before STRICT (PERMISSIVE by default)');
    const took = await flip('STRICT', async () => !ok(await plaintextToB()));
    t.diagnostic(`policy flip to STRICT: ${took.fromExit} ms after citadel policy apply exited (${took.fromStart} ms from its start)`);

    const call = await seenBy(viaSidecars);
    assert.deepEqual(ok(call.outcome) && [call.outcome.status, call.outcome.body], [200, 'server'], JSON.stringify(call.outcome));
    assert.match(call.seen?.xfcc ?? '', new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`), 'B’s app sees A’s verified SPIFFE ID, not the forged header');

    const plain = await seenBy(plaintextToB);
    assert.ok(!ok(plain.outcome), `plaintext straight to B's inbound port is refused: ${JSON.stringify(plain.outcome)}`);
    assert.equal(plain.seen, undefined);
    const other = await seenBy(() => mtlsToB(foreignCred));
    assert.ok(!ok(other.outcome), `a certificate from another root is refused: ${JSON.stringify(other.outcome)}`);
    assert.equal(other.seen, undefined);
    t.diagnostic(`refused under STRICT: plaintext ${JSON.stringify(plain.outcome)}, another root ${JSON.stringify(other.outcome)}`);
    const mesh = await seenBy(() => mtlsToB());
    assert.ok(ok(mesh.outcome) && mesh.outcome.status === 200, `a mesh certificate is admitted: ${JSON.stringify(mesh.outcome)}`);
    assert.match(mesh.seen?.xfcc ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/probe$/);
  });

  it('PERMISSIVE: plaintext and mTLS both reach B; the forged XFCC of a plaintext caller is removed', async (t) => {
    const took = await flip('PERMISSIVE', async () => ok(await plaintextToB()));
    t.diagnostic(`policy flip to PERMISSIVE: ${took.fromExit} ms after citadel policy apply exited (${took.fromStart} ms from its start)`);
    const plain = await seenBy(plaintextToB);
    assert.ok(ok(plain.outcome) && plain.outcome.status === 200);
    assert.equal(plain.seen?.xfcc, undefined, 'no client certificate, no XFCC: the forged one is stripped');
    const mesh = await seenBy(() => mtlsToB());
    assert.ok(ok(mesh.outcome) && mesh.outcome.status === 200, JSON.stringify(mesh.outcome));
    assert.match(mesh.seen?.xfcc ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/probe$/);
    const call = await seenBy(viaSidecars);
    assert.ok(ok(call.outcome) && call.outcome.status === 200);
    assert.match(call.seen?.xfcc ?? '', new RegExp(`URI=${CLIENT_ID}$`), 'A’s sidecar still sends mTLS (auto mTLS)');
  });

  it('DISABLE: plaintext only; A’s sidecar follows and calls B in plaintext', async (t) => {
    const took = await flip('DISABLE', async () => {
      if (ok(await mtlsToB())) return false;
      const call = await seenBy(viaSidecars);
      return ok(call.outcome) && call.outcome.status === 200 && call.seen !== undefined && call.seen.xfcc === undefined;
    });
    t.diagnostic(`policy flip to DISABLE (B refuses TLS and A sends plaintext): ${took.fromExit} ms after citadel policy apply exited (${took.fromStart} ms from its start)`);
    assert.ok(ok(await plaintextToB()));
    const tlsCall = await mtlsToB();
    assert.ok(!ok(tlsCall), `TLS to a DISABLE port fails: ${JSON.stringify(tlsCall)}`);
  });

  it('a Marathon scale-up is a new endpoint in A’s Envoy', async (t) => {
    const cluster_ = `outbound|${ports.server}||server-shop.marathon.mesos`;
    assert.deepEqual(await a.endpoints(cluster_), [`${serverTask.ip}:${ports.server}`]);
    const putAt = Date.now();
    await cluster.marathon('PUT', '/v2/apps/shop/server', { instances: 2 });
    const answered = Date.now() - putAt;
    const tasks = await cluster.running('/shop/server', 2);
    const added = tasks.find((x) => x.id !== serverTask.id)!;
    const took = await timeUntil('the new endpoint in A’s /clusters', async () => (await a.endpoints(cluster_)).includes(`${added.ip}:${ports.server}`));
    t.diagnostic(`scale-up to a new endpoint in A's /clusters: ${took + answered} ms after the PUT (Marathon answered in ${answered} ms)`);
    assert.deepEqual(await a.endpoints(cluster_), [`${serverTask.ip}:${ports.server}`, `${added.ip}:${ports.server}`].sort());
  });

  it('a scale-down removes the endpoint again', async () => {
    const cluster_ = `outbound|${ports.server}||server-shop.marathon.mesos`;
    await cluster.marathon('PUT', '/v2/apps/shop/server', { instances: 1 });
    const [left] = await waitFor('one task left', async () => {
      const t = await cluster.tasks('/shop/server');
      return t.length === 1 && t;
    });
    await a.waitFor('one endpoint in A’s /clusters', async () => {
      const e = await a.endpoints(cluster_);
      return e.length === 1 && e[0] === `${left.ip}:${ports.server}`;
    });
  });

  it('the node agent restarts: both Envoys reconnect to its sockets, get new certificates, and A -> B works', async () => {
    const serials = async (e: EnvoyProcess) => (await e.certs()).certificates.map((c) => c.cert_chain[0].serial_number);
    const before = { a: await serials(a), b: await serials(b) };
    await cluster.restartAgent();
    // The keys are made on the node and never stored: the restarted agent makes new ones, and SDS pushes them.
    await b.waitFor('new certificates in both Envoys', async () => {
      const now = { a: await serials(a), b: await serials(b) };
      return now.a.every((s) => !before.a.includes(s)) && now.b.every((s) => !before.b.includes(s));
    }, 20_000);
    await a.waitFor('A to call B again', async () => {
      const call = await seenBy(viaSidecars);
      return ok(call.outcome) && call.outcome.status === 200;
    }, 20_000);
  });

  it('citadel proxy-status: both proxies, via the agent, SYNCED; the same Envoy processes throughout', async () => {
    const status = await waitFor('both proxies synced', () => {
      const s = cluster.proxyStatus();
      const synced = (p: (typeof s)[number]) => ['CDS', 'LDS', 'RDS'].every((k) => p.types[k].status === 'SYNCED') && ['SYNCED', 'NOT SENT'].includes(p.types.EDS.status);
      return s.length === 2 && s.every(synced) && s;
    }, 10_000);
    const byWorkload = new Map(status.map((p) => [p.marathonId, p]));
    assert.equal(byWorkload.get('/shop/client')?.identity, CLIENT_ID);
    assert.equal(byWorkload.get('/shop/client')?.types.EDS.status, 'SYNCED', 'A has an EDS cluster: B');
    assert.equal(byWorkload.get('/shop/server')?.identity, SERVER_ID);
    assert.equal(byWorkload.get('/shop/server')?.nodeId, `sidecar~${serverTask.ip}~${serverTask.id}`);
    for (const p of status) assert.equal(p.via, 'agent-1', 'through the node agent’s xds socket');
    const table = cluster.citadel('proxy-status', '--server', `http://127.0.0.1:${cluster.server.monitoringPort}`);
    assert.match(table.out, /^NAME\s+WORKLOAD\s+IDENTITY\s+VIA\s+REPLICA\s+CDS\s+LDS\s+EDS\s+RDS\s+SDS\n/);
    // SDS `-`: an sds-mode sidecar's secrets come from the node agent, not from the server.
    assert.match(table.out, new RegExp(`sidecar~${serverTask.ip.replace(/\./g, '\\.')}~\\S+\\s+/shop/server\\s+${SERVER_ID}\\s+agent-1\\s+\\S+\\s+SYNCED\\s+SYNCED\\s+(?:NOT SENT|SYNCED)\\s+(?:NOT SENT|SYNCED)\\s+-\n`));
    assert.deepEqual([a.pid, b.pid], pids, 'no Envoy restarted');
  });
});
