/**
 * The same two sidecars in files mode: certificates are the node agent's files
 * (`citadel agent --certs-dir`), and each Envoy reaches `citadel server --xds-port` itself over
 * mTLS with those files (`citadel envoy-bootstrap --mode files --certs-dir <the identity's
 * directory> --xds-address`), as a sidecar does with /etc/certs mounted. STRICT from the start.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, it } from 'node:test';
import { describeWithEnvoy, startEnvoy, type EnvoyProcess } from '../helpers/envoy';
import { bundleFor, testCa } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { freePort, httpGet, httpsGet, MeshCluster, meshApp, meshWide, ok, serialOf, startBackend, type Identity, type Task } from './mesh-cluster';

const CLIENT = { namespace: 'shop', serviceAccount: 'client' };
const SERVER = { namespace: 'shop', serviceAccount: 'server' };
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/server';

describeWithEnvoy('mesh end to end: Envoy sidecars in files mode, configured by citadel xDS', () => {
  let cluster: MeshCluster;
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let a: EnvoyProcess;
  let b: EnvoyProcess;
  let serverTask: Task;
  const ports = { server: 0, client: 0, local: 0 };

  before(async () => {
    cluster = await MeshCluster.start({ files: true });
    ports.server = await freePort();
    ports.client = await freePort();
    ports.local = await freePort();
    const apply = cluster.applyPolicy('mesh-strict', meshWide('STRICT'));
    await cluster.deploy(meshApp('/shop/server', 'server', ports.server));
    await cluster.deploy(meshApp('/shop/client', 'client', ports.client, { labels: { 'citadel.io/upstreams': `/shop/server:${ports.local}` } }));
    [serverTask] = await cluster.running('/shop/server');
    const [clientTask] = await cluster.running('/shop/client');
    await cluster.identityReady(SERVER);
    await cluster.identityReady(CLIENT);
    await apply.done;
    backend = await startBackend(ports.server, 'server');
    const sidecar = (service: string, id: Identity, task: Task) => {
      const yaml = cluster.bootstrap('envoy-bootstrap', `${id.serviceAccount}.yaml`, [
        '--service', service, '--service-account', id.serviceAccount, '--mode', 'files',
        '--certs-dir', cluster.filesDir(id), '--xds-address', `127.0.0.1:${cluster.server.xdsPort}`,
      ]);
      return startEnvoy({ config: yaml, extraArgs: ['--service-node', `sidecar~${task.ip}~${task.id}`] });
    };
    b = await sidecar('/shop/server', SERVER, serverTask);
    a = await sidecar('/shop/client', CLIENT, clientTask);
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await backend?.close();
    await cluster?.close();
  });

  it('each sidecar dials xDS directly with its own certificate, and its TLS contexts use the agent’s files', async () => {
    const status = await waitFor('both proxies synced', () => {
      const s = cluster.proxyStatus();
      if (s.length === 2 && s.every((p) => ['CDS', 'LDS', 'RDS'].every((k) => p.types[k].status === 'SYNCED'))) return s;
      throw new Error(`proxy-status: ${JSON.stringify(s)}`);
    }, 10_000);
    assert.deepEqual(status.map((p) => [p.marathonId, p.identity, p.via]).sort(), [['/shop/client', CLIENT_ID, 'direct'], ['/shop/server', SERVER_ID, 'direct']]);
    for (const [envoy, id] of [[a, CLIENT], [b, SERVER]] as const) {
      const onDisk = serialOf(readFileSync(path.join(cluster.filesDir(id), 'cert-chain.pem'), 'utf8'));
      const certs = await envoy.certs();
      // The xds-grpc cluster, plus the TLS contexts xDS gave it (B's inbound listener; A's cluster to B).
      assert.ok(certs.certificates.length >= 2, JSON.stringify(certs));
      for (const c of certs.certificates) {
        assert.equal(c.cert_chain[0].serial_number, onDisk);
        assert.equal(c.cert_chain[0].path, path.join(cluster.filesDir(id), 'cert-chain.pem'));
        assert.equal(c.ca_cert[0].serial_number, serialOf(cluster.rootPem));
      }
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
});
