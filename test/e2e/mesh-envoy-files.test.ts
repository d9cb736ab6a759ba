/**
 * The same two sidecars in files mode: certificates are the node agent's files
 * (`citadel agent --certs-dir`), and each Envoy reaches `citadel server --xds-port` itself over
 * mTLS with those files (`citadel envoy-bootstrap --mode files --certs-dir <the identity's
 * directory> --xds-address`), as a sidecar does with /etc/certs mounted. STRICT from the start,
 * then PERMISSIVE and DISABLE while the Envoys run, as in SDS mode.
 *
 * Workload certificates live 12 s here (renewed every 6 s), so the scenario also shows rotation
 * with no restart: Envoy's /certs follows the agent's files, new connections present the new
 * certificate, no request fails, and once the certificates Envoy started with have expired, a
 * restarted server is dialled again, with a current certificate.
 */
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import https from 'node:https';
import * as path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { after, before, it } from 'node:test';
import { describeWithEnvoy, startEnvoy, type EnvoyProcess } from '../helpers/envoy';
import { bundleFor, testCa } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { freePort, httpGet, httpsGet, MeshCluster, meshApp, meshWide, ok, peerCertificate, serialOf, startBackend, type Identity, type Outcome, type Task } from '../helpers/mesh-cluster';

const CLIENT = { namespace: 'shop', serviceAccount: 'client' };
const SERVER = { namespace: 'shop', serviceAccount: 'server' };
const WITNESS = { namespace: 'shop', serviceAccount: 'witness' };
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/server';
const TTL_MS = 12_000;
const SERVER_ARGS = ['--workload-cert-ttl', '12s', '--workload-cert-min-grace-period', '3s'];

/** The witness has no sidecar: a DestinationRule gives A's cluster to it ISTIO_MUTUAL. */
const WITNESS_RULE = `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: witness
  namespace: shop
spec:
  host: witness-shop.marathon.mesos
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
`;

/** One identity's files as of one version (read through `..data`'s target, so never half old, half new). */
function filesOf(dir: string): { certChainPem: string; keyPem: string; rootCertPem: string } {
  for (let attempt = 1; ; attempt++) {
    try {
      const version = path.join(dir, readlinkSync(path.join(dir, '..data')));
      const read = (f: string) => readFileSync(path.join(version, f), 'utf8');
      return { certChainPem: read('cert-chain.pem'), keyPem: read('key.pem'), rootCertPem: read('root-cert.pem') };
    } catch (err) {
      // The agent removed that version meanwhile: read the new one.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3) throw err;
    }
  }
}

/**
 * A mesh destination without a sidecar: a TLS server that presents the agent's current witness
 * certificate, requires a client certificate from the mesh root (expired ones are refused), and
 * records the serial each connection's client presented.
 */
async function startWitness(host: string, port: number, dir: string): Promise<{ seen: string[]; problems: string[]; close(): Promise<void> }> {
  const context = () => {
    const f = filesOf(dir);
    return { cert: f.certChainPem, key: f.keyPem, ca: f.rootCertPem };
  };
  const seen: string[] = [];
  const problems: string[] = [];
  const server = https.createServer(
    {
      ...context(),
      requestCert: true,
      rejectUnauthorized: true,
      // Envoy offers ALPN `istio` to a mesh destination; Node refuses a connection whose ALPN it does not share.
      ALPNProtocols: ['istio', 'http/1.1'],
      SNICallback: (_name, cb) => {
        try {
          cb(null, tls.createSecureContext(context()));
        } catch (err) {
          cb(err as Error);
        }
      },
    },
    (req, res) => {
      seen.push((req.socket as tls.TLSSocket).getPeerX509Certificate()!.serialNumber.toLowerCase());
      res.setHeader('connection', 'close');
      res.end('witness');
    },
  );
  server.on('tlsClientError', (err) => problems.push(err.message));
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    seen,
    problems,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Requests through A's sidecar, one after another, until stopped: every outcome kept. */
function startLoad(targets: Array<{ name: string; port: number; body: string }>): { outcomes: Array<{ at: number; name: string; outcome: Outcome; body: string }>; stop(): Promise<void> } {
  const outcomes: Array<{ at: number; name: string; outcome: Outcome; body: string }> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const t of targets) outcomes.push({ at: Date.now(), name: t.name, outcome: await httpGet('127.0.0.1', t.port), body: t.body });
      await new Promise((r) => setTimeout(r, 50)); // a steady trickle, not a flood on the shared machine
    }
  })();
  return {
    outcomes,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

const serialOnDisk = (dir: string) => serialOf(filesOf(dir).certChainPem);
const notAfter = (pem: string) => Date.parse(new X509Certificate(pem).validTo);

describeWithEnvoy('mesh end to end: Envoy sidecars in files mode, configured by citadel xDS', () => {
  let cluster: MeshCluster;
  const backends: Array<{ close(): Promise<void> }> = [];
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let witness: Awaited<ReturnType<typeof startWitness>>;
  let load: ReturnType<typeof startLoad> | undefined;
  let a: EnvoyProcess;
  let b: EnvoyProcess;
  let serverTask: Task;
  let clientTask: Task;
  let pids: Array<number | undefined>;
  /** The certificates on disk once both Envoys had started. */
  const first = { a: '', b: '' };
  const ports = { server: 0, serverTcp: 0, client: 0, witness: 0, local: 0, localTcp: 0, localWitness: 0 };

  before(async () => {
    cluster = await MeshCluster.start({ files: true, serverArgs: SERVER_ARGS, restartableServer: true });
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
    const apply = cluster.applyPolicy('mesh-strict', `${meshWide('STRICT')}---\n${WITNESS_RULE}`);
    await cluster.deploy(meshApp('/shop/server', 'server', ports.server, { morePorts: [{ port: ports.serverTcp, name: 'tcp' }] }));
    await cluster.deploy(meshApp('/shop/witness', 'witness', ports.witness, { portName: 'tcp', sidecar: false }));
    const upstreams = `/shop/server:${ports.local},/shop/server:tcp:${ports.localTcp},/shop/witness:${ports.localWitness}`;
    await cluster.deploy(meshApp('/shop/client', 'client', ports.client, { labels: { 'citadel.io/upstreams': upstreams } }));
    [serverTask] = await cluster.running('/shop/server');
    [clientTask] = await cluster.running('/shop/client');
    const [witnessTask] = await cluster.running('/shop/witness');
    for (const id of [SERVER, CLIENT, WITNESS]) await cluster.identityReady(id);
    await apply.done;
    backend = await startBackend(ports.server, 'server');
    backends.push(backend, await startBackend(ports.serverTcp, 'server-tcp'));
    witness = await startWitness(witnessTask.ip, ports.witness, cluster.filesDir(WITNESS));
    const sidecar = (service: string, id: Identity, task: Task) => {
      const yaml = cluster.bootstrap('envoy-bootstrap', `${id.serviceAccount}.yaml`, [
        '--service', service, '--service-account', id.serviceAccount, '--mode', 'files',
        '--certs-dir', cluster.filesDir(id), '--xds-address', `127.0.0.1:${cluster.server.xdsPort}`,
      ]);
      return startEnvoy({ config: yaml, extraArgs: ['--service-node', `sidecar~${task.ip}~${task.id}`] });
    };
    b = await sidecar('/shop/server', SERVER, serverTask);
    a = await sidecar('/shop/client', CLIENT, clientTask);
    pids = [a.pid, b.pid];
    // Read once both run: each connected to xDS with this certificate or an earlier one, which expires no later.
    first.a = filesOf(cluster.filesDir(CLIENT)).certChainPem;
    first.b = filesOf(cluster.filesDir(SERVER)).certChainPem;
  });

  after(async () => {
    await load?.stop();
    await a?.stop();
    await b?.stop();
    await witness?.close();
    for (const x of backends) await x.close();
    await cluster?.close();
  });

  it('each sidecar dials xDS directly with its own certificate; its TLS contexts take the agent’s files as SDS secrets over ADS', async () => {
    const status = await waitFor('both proxies synced', () => {
      const s = cluster.proxyStatus();
      if (s.length === 2 && s.every((p) => ['CDS', 'LDS', 'RDS', 'SDS'].every((k) => p.types[k].status === 'SYNCED'))) return s;
      throw new Error(`proxy-status: ${JSON.stringify(s)}`);
    }, 10_000);
    assert.deepEqual(status.map((p) => [p.marathonId, p.identity, p.via]).sort(), [['/shop/client', CLIENT_ID, 'direct'], ['/shop/server', SERVER_ID, 'direct']]);
    for (const [envoy, id] of [[a, CLIENT], [b, SERVER]] as const) {
      const dir = cluster.filesDir(id);
      const dump = await envoy.configDump<{ configs: Array<{ name: string }> }>('?resource=dynamic_active_secrets');
      const secrets = dump.configs.map((c) => c.name).sort();
      // Over ADS for the listeners and clusters; from the agent's Envoy SDS files for the xds-grpc cluster itself.
      assert.deepEqual(secrets, ['ROOTCA', 'default', `file-cert:${dir}/cert-chain.pem~${dir}/key.pem`, `file-root:${dir}/root-cert.pem`].sort(), JSON.stringify(dump));
      // The xds-grpc cluster, plus the TLS contexts xDS gave it (B's inbound listeners; A's inbound listener and its clusters).
      await envoy.waitFor('every TLS context on the files’ certificate', async () => {
        const certs = await envoy.certs();
        const onDisk = serialOnDisk(dir);
        assert.ok(certs.certificates.length >= 2, JSON.stringify(certs));
        for (const c of certs.certificates) {
          assert.equal(c.cert_chain[0].serial_number, onDisk);
          assert.equal(c.ca_cert[0].serial_number, serialOf(cluster.rootPem));
        }
        return true;
      });
    }
  });

  it('STRICT: A -> B over mTLS with A’s SPIFFE ID at B’s app; plaintext and another root’s certificate refused', async () => {
    const before = backend.seen.length;
    const call = await httpGet('127.0.0.1', ports.local);
    assert.deepEqual(ok(call) && [call.status, call.body], [200, 'server'], JSON.stringify(call));
    assert.match(backend.seen[before]?.xfcc ?? '', new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`));
    const plain = await httpGet(serverTask.ip, ports.server);
    assert.ok(!ok(plain), `plaintext refused: ${JSON.stringify(plain)}`);
    const foreign = bundleFor(testCa(), 'shop', 'client');
    const other = await httpsGet(serverTask.ip, ports.server, foreign);
    assert.ok(!ok(other), `another root refused: ${JSON.stringify(other)}`);
    assert.equal(backend.seen.length, before + 1, 'nothing refused reached B’s app');
  });

  it('the agent rotates the files twice: /certs follows with the same Envoy, new connections present the new certificate', async (t) => {
    load = startLoad([
      { name: 'A -> B http (a pooled connection)', port: ports.local, body: 'server' },
      { name: 'A -> B tcp (a new connection each)', port: ports.localTcp, body: 'server-tcp' },
      { name: 'A -> witness (a new connection each)', port: ports.localWitness, body: 'witness' },
    ]);
    /** Waits for `n` new certificates in an identity's files; after each, for every TLS context of its Envoy to hold it. */
    const follow = async (id: Identity, envoy: EnvoyProcess, n: number) => {
      const dir = cluster.filesDir(id);
      const rotated: Array<{ serial: string; ms: number }> = [];
      let current = serialOnDisk(dir);
      while (rotated.length < n) {
        const next = await waitFor(`new certificate ${rotated.length + 1} in ${dir}`, () => {
          const s = serialOnDisk(dir);
          return s !== current && s;
        }, { timeoutMs: TTL_MS * 2, intervalMs: 20 });
        const swappedAt = Date.now();
        await envoy.waitFor(`every TLS context in /certs to hold ${next}`, async () => (await envoy.certs()).certificates.every((c) => c.cert_chain[0].serial_number === next), { timeoutMs: 5000, intervalMs: 20 });
        rotated.push({ serial: next, ms: Date.now() - swappedAt });
        current = next;
      }
      return rotated;
    };
    const [ofA, ofB] = await Promise.all([follow(CLIENT, a, 2), follow(SERVER, b, 2)]);
    t.diagnostic(`files swapped -> in Envoy's /certs: A ${ofA.map((r) => r.ms).join(', ')} ms; B ${ofB.map((r) => r.ms).join(', ')} ms (polled every 20 ms)`);
    assert.deepEqual([a.pid, b.pid], pids, 'no Envoy restarted');

    // A new connection presents the current certificate: A's to the witness (which records it), B's to a TLS client.
    for (const { serial } of ofA) await waitFor(`the witness to see A present ${serial}`, () => witness.seen.includes(serial), 5000).catch((err) => assert.fail(`${err.message}; the witness refused: ${witness.problems.slice(-3).join('; ')}`));
    const probe = await waitFor('B to present its current certificate to a new connection', async () => {
      const p = await peerCertificate(serverTask.ip, ports.server, filesOf(cluster.filesDir(CLIENT)));
      return 'serial' in p && p.serial === serialOnDisk(cluster.filesDir(SERVER)) && p;
    });
    assert.equal(probe.uri, SERVER_ID);
    assert.notEqual(probe.serial, serialOf(first.b), 'a renewed certificate, not the one B started with');
  });

  it('once the certificates Envoy started with have expired: new connections still work, and a restarted server is dialled again with a current one', async (t) => {
    const expired = Math.max(notAfter(first.a), notAfter(first.b));
    await waitFor('the certificates both Envoys started with to expire', () => Date.now() > expired + 1000, TTL_MS * 2);
    const count = (name: string) => load!.outcomes.filter((o) => o.name.startsWith(name) && o.at > expired + 1000 && ok(o.outcome) && o.outcome.status === 200).length;
    // Each of these is a new A -> B (or A -> witness) handshake, which an expired certificate on either side would fail.
    await waitFor('new connections after the expiry', () => count('A -> B tcp') >= 3 && count('A -> witness') >= 3, 10_000);
    assert.ok(!witness.seen.slice(-3).includes(serialOf(first.a)));

    // The xDS connection's own certificate: the server refuses an expired one, so this works only if xds-grpc took the renewed files.
    await cluster.restartServer();
    const status = await waitFor('both proxies back, synced, with their own certificates', () => {
      const s = cluster.proxyStatus();
      if (s.length === 2 && s.every((p) => p.via === 'direct' && ['CDS', 'LDS', 'SDS'].every((k) => p.types[k].status === 'SYNCED'))) return s;
      throw new Error(`proxy-status: ${JSON.stringify(s)}`);
    }, 30_000);
    assert.deepEqual(status.map((p) => p.identity).sort(), [CLIENT_ID, SERVER_ID]);
    assert.deepEqual([a.pid, b.pid], pids, 'no Envoy restarted');

    await load!.stop();
    const failed = load!.outcomes.filter((o) => !ok(o.outcome) || o.outcome.status !== 200 || o.outcome.body !== o.body);
    const byName = new Map<string, number>();
    for (const o of load!.outcomes) byName.set(o.name, (byName.get(o.name) ?? 0) + 1);
    t.diagnostic(`requests through A during two rotations, the expiry and a server restart: ${[...byName].map(([n, c]) => `${n}: ${c}`).join('; ')}`);
    assert.deepEqual(failed.map((o) => `${new Date(o.at).toISOString()} ${o.name}: ${JSON.stringify(o.outcome)}`), [], 'no request failed');
  });

  it('a policy change that rebuilds TLS listeners and clusters: Envoy warms them with the secrets it already has, and serves the new configuration', async () => {
    // B's listeners go PERMISSIVE (new filter chains); A's cluster to B checks another SAN list (a new cluster).
    const rule = WITNESS_RULE.replace(/witness/g, 'server') + `      subjectAltNames: ["${SERVER_ID}", "spiffe://cluster.local/ns/shop/sa/server-canary"]\n`;
    await cluster.applyPolicy('permissive', `${meshWide('PERMISSIVE')}---\n${WITNESS_RULE}---\n${rule}`).done;
    await b.waitFor('B’s listeners PERMISSIVE (a plaintext call gets through)', async () => {
      const plain = await httpGet(serverTask.ip, ports.server);
      return ok(plain) && plain.status === 200;
    }, 10_000);
    await a.waitFor('A’s cluster to B with the new SAN list', async () => JSON.stringify(await a.configDump('?resource=dynamic_active_clusters')).includes('server-canary'), 10_000);
    for (const envoy of [a, b]) {
      await envoy.waitFor('nothing left warming', async () => (await envoy.stat('cluster_manager.warming_clusters')) === 0 && (await envoy.stat('listener_manager.total_listeners_warming')) === 0, 10_000);
    }
    const call = await httpGet('127.0.0.1', ports.local);
    assert.deepEqual(ok(call) && [call.status, call.body], [200, 'server'], JSON.stringify(call));
    await waitFor('both proxies synced, SDS included', () => {
      const s = cluster.proxyStatus();
      if (s.length === 2 && s.every((p) => ['CDS', 'LDS', 'SDS'].every((k) => p.types[k].status === 'SYNCED'))) return s;
      throw new Error(`proxy-status: ${JSON.stringify(s)}`);
    }, 10_000);
    assert.deepEqual([a.pid, b.pid], pids, 'no Envoy restarted');
  });

  it('DISABLE: B’s port takes plaintext only and refuses a TLS handshake; A calls B in plaintext; the witness’s DestinationRule keeps A -> witness on mTLS', async () => {
    // The DestinationRule of the step before asked ISTIO_MUTUAL to B: without it, A's cluster follows B's mode (auto mTLS).
    const deleted = cluster.citadel('policy', 'delete', 'DestinationRule', 'server', '-n', 'shop', '--store', cluster.store);
    assert.equal(deleted.code, 0, deleted.err);
    await cluster.applyPolicy('disable', `${meshWide('DISABLE')}---\n${WITNESS_RULE}`).done;
    const inbound = `inbound|${serverTask.ip}|${ports.server}`;
    const toB = `outbound|${ports.server}||server-shop.marathon.mesos`;
    /** What Envoy's config_dump holds of one active listener or cluster, as JSON text (empty when it has none of that name); a listener's draining state left out. */
    const dumped = async (envoy: EnvoyProcess, resource: 'dynamic_listeners' | 'dynamic_active_clusters', name: string) => {
      const dump = await envoy.configDump<{ configs: Array<{ active_state?: { listener?: { name: string } }; cluster?: { name: string } }> }>(`?resource=${resource}`);
      const entry = dump.configs.map((c) => c.active_state?.listener ?? c.cluster).find((x) => x?.name === name);
      return entry ? JSON.stringify(entry) : '';
    };
    await b.waitFor('B’s inbound listener in plaintext (no TLS context, no tls_inspector)', async () => {
      const l = await dumped(b, 'dynamic_listeners', inbound);
      return l !== '' && !l.includes('DownstreamTlsContext') && !l.includes('tls_inspector');
    }, 10_000).catch(async (err: Error) => assert.fail(`${err.message.split('\n')[0]}; ${inbound} is ${(await dumped(b, 'dynamic_listeners', inbound)).slice(0, 3000) || 'absent'}; proxy-status ${JSON.stringify(cluster.proxyStatus())}; policy ${cluster.citadel('policy', 'get', '--store', cluster.store).out}`));
    await a.waitFor('A’s cluster to B without a TLS context', async () => {
      const c = await dumped(a, 'dynamic_active_clusters', toB);
      return c !== '' && !c.includes('UpstreamTlsContext');
    }, 10_000);
    for (const envoy of [a, b]) {
      await envoy.waitFor('nothing left warming', async () => (await envoy.stat('cluster_manager.warming_clusters')) === 0 && (await envoy.stat('listener_manager.total_listeners_warming')) === 0, 10_000);
    }

    const plain = await httpGet(serverTask.ip, ports.server);
    assert.deepEqual(ok(plain) && [plain.status, plain.body], [200, 'server'], `plaintext straight to B is accepted: ${JSON.stringify(plain)}`);
    assert.equal(backend.seen[backend.seen.length - 1]?.xfcc, undefined, 'no client certificate, no XFCC: the forged one is stripped');
    const handshake = await peerCertificate(serverTask.ip, ports.server, filesOf(cluster.filesDir(CLIENT)));
    assert.ok('error' in handshake, `a TLS handshake with a mesh certificate fails on a DISABLE port: ${JSON.stringify(handshake)}`);
    const mesh = await httpsGet(serverTask.ip, ports.server, filesOf(cluster.filesDir(CLIENT)));
    assert.ok(!ok(mesh), `mTLS to B is refused: ${JSON.stringify(mesh)}`);

    const before = backend.seen.length;
    const call = await httpGet('127.0.0.1', ports.local);
    assert.deepEqual(ok(call) && [call.status, call.body], [200, 'server'], JSON.stringify(call));
    assert.equal(backend.seen.length, before + 1);
    assert.equal(backend.seen[before].xfcc, undefined, 'A -> B arrives in plaintext: no verified caller, and the forged XFCC removed');

    const witnessSeen = witness.seen.length;
    const viaWitness = await httpGet('127.0.0.1', ports.localWitness);
    assert.deepEqual(ok(viaWitness) && [viaWitness.status, viaWitness.body], [200, 'witness'], JSON.stringify(viaWitness));
    assert.equal(witness.seen.length, witnessSeen + 1, 'the witness (mTLS required) saw A’s certificate');
    assert.ok((await dumped(a, 'dynamic_active_clusters', `outbound|${ports.witness}||witness-shop.marathon.mesos`)).includes('UpstreamTlsContext'), 'A’s cluster to the witness keeps ISTIO_MUTUAL');

    await waitFor('both proxies synced after DISABLE', () => {
      const st = cluster.proxyStatus();
      if (st.length === 2 && st.every((p) => ['CDS', 'LDS'].every((k) => p.types[k].status === 'SYNCED'))) return st;
      throw new Error(`proxy-status: ${JSON.stringify(st)}`);
    }, 10_000);
    assert.deepEqual([a.pid, b.pid], pids, 'no Envoy restarted');
  });
});
