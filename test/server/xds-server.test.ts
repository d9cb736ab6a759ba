/**
 * The xDS server over mTLS with a real gRPC client speaking ADS as Envoy does: authorization by
 * certificate (and by node for the agent's proxy), the ADS order, ACK/NACK, pushes on mesh and
 * policy changes, EDS again after CDS, proxy status.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import type { DiscoveryRequest } from '../../src/api/discovery';
import { envoyProtoRoot } from '../../src/api/envoy-protos';
import { silentLogger } from '../../src/common/log';
import type { MeshSnapshot } from '../../src/mesh/model';
import type { PolicyDocument } from '../../src/mesh/policy';
import { parsePolicyText } from '../../src/mesh/policy';
import { TYPE_URL } from '../../src/mesh/resources';
import { ServerCertificate } from '../../src/server/server-certificate';
import { IDENTITY_HEADER, proxyNodeOf, XdsServer } from '../../src/server/xds-server';
import { endpoint, service, snapshotOf } from '../mesh/mesh-fixtures';
import { AdsClient, Changing, names, nodeOf } from '../helpers/ads-client';
import { waitFor } from '../helpers/wait';
import { CaFixture, credentialFor, node, placeApp, startCaFixture, workload } from './fixtures';

describe('the xDS server (ADS over mTLS)', () => {
  let f: CaFixture;
  let xds: XdsServer;
  let address: string;
  const api = service({ marathonId: '/prod/api', serviceAccount: 'api', endpoints: [endpoint('10.1.0.2', [8080])] });
  const web = service({ marathonId: '/web/front', serviceAccount: 'front', upstreams: [{ service: '/prod/api', localPort: 15080 }] });
  const mesh = new Changing<MeshSnapshot>(snapshotOf([api, web]));
  const policies = new Changing<readonly PolicyDocument[]>([]);
  const clients: AdsClient[] = [];
  const connect = (cred: { keyPem: string; certChainPem: string }, headers?: Record<string, string>) => {
    const c = new AdsClient(address, f.ca.rootCertPem, cred, headers);
    clients.push(c);
    return c;
  };

  before(async () => {
    f = await startCaFixture();
    const serverCertificate = new ServerCertificate(f.ca, [], silentLogger);
    xds = new XdsServer({
      trustDomain: 'cluster.local',
      serverCertificate,
      placements: f.view,
      mesh: { current: () => mesh.value, onChange: (l) => mesh.onChange(l) },
      policies: { current: () => policies.value, onChange: (l) => policies.onChange(l) },
      port: 0,
      host: '127.0.0.1',
      logger: silentLogger,
      registry: new Registry(),
      quietMs: 20,
    });
    address = `127.0.0.1:${await xds.start()}`;
  });
  after(async () => {
    for (const c of clients) c.close();
    await xds.close();
    await f.close();
  });

  it('a sidecar with its own certificate gets its configuration in ADS order; an ACK gets no answer', async () => {
    const c = connect(credentialFor(f.ca, workload('web', 'front')));
    c.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front') });
    const cds = await c.next();
    assert.equal(cds.typeUrl, TYPE_URL.cluster);
    assert.ok(names(cds, 'envoy.config.cluster.v3.Cluster').includes('outbound|8080||api-prod.marathon.mesos'));
    c.send({ typeUrl: TYPE_URL.endpoint, resourceNames: ['outbound|8080||api-prod.marathon.mesos'] });
    const eds = await c.next();
    assert.deepEqual(names(eds, 'envoy.config.endpoint.v3.ClusterLoadAssignment'), ['outbound|8080||api-prod.marathon.mesos']);
    c.send({ typeUrl: TYPE_URL.cluster, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
    c.send({ typeUrl: TYPE_URL.listener });
    const lds = await c.next();
    assert.ok(names(lds, 'envoy.config.listener.v3.Listener').some((n) => /^outbound\|127\.0\.0\.1\|15080$/.test(n!)));
    c.send({ typeUrl: TYPE_URL.endpoint, versionInfo: eds.versionInfo, responseNonce: eds.nonce, resourceNames: ['outbound|8080||api-prod.marathon.mesos'] });
    c.send({ typeUrl: TYPE_URL.listener, versionInfo: lds.versionInfo, responseNonce: lds.nonce });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.pending, 0, 'ACKs got no answer');
    const status = xds.status().find((p) => p.marathonId === '/web/front')!;
    assert.equal(status.identity, 'spiffe://cluster.local/ns/web/sa/front');
    assert.equal(status.types.CDS.status, 'SYNCED');
    assert.equal(status.types.EDS.status, 'SYNCED');
    assert.equal(status.types.LDS.status, 'SYNCED');
    assert.equal(status.types.RDS.status, 'NOT SENT');

    // A new endpoint: pushed as EDS within the debounce, and only EDS.
    mesh.set(snapshotOf([{ ...api, endpoints: [...api.endpoints, endpoint('10.1.0.3', [8080])] }, web], 2));
    const pushed = await c.next();
    assert.equal(pushed.typeUrl, TYPE_URL.endpoint);
    const cla = envoyProtoRoot().lookupType('envoy.config.endpoint.v3.ClusterLoadAssignment').toObject(envoyProtoRoot().lookupType('envoy.config.endpoint.v3.ClusterLoadAssignment').decode(pushed.resources[0].value)) as { endpoints: Array<{ lb_endpoints: unknown[] }> };
    assert.equal(cla.endpoints.flatMap((e) => e.lb_endpoints).length, 2);

    // A NACK: recorded, never answered with the same content.
    c.send({ typeUrl: TYPE_URL.endpoint, versionInfo: eds.versionInfo, responseNonce: pushed.nonce, resourceNames: ['outbound|8080||api-prod.marathon.mesos'], errorDetail: { code: 13, message: 'bad endpoint' } });
    await waitFor('the NACK in proxy status', () => xds.status().find((p) => p.marathonId === '/web/front')?.types.EDS.status === 'NACKED');
    assert.equal(xds.status().find((p) => p.marathonId === '/web/front')!.types.EDS.error, 'bad endpoint');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.pending, 0, 'no resend after the NACK');
  });

  it('a policy change reaches the destination sidecar’s listeners (STRICT)', async () => {
    const c = connect(credentialFor(f.ca, workload('prod', 'api')));
    c.send({ typeUrl: TYPE_URL.listener, node: nodeOf('/prod/api', '10.1.0.2') });
    const before = await c.next();
    c.send({ typeUrl: TYPE_URL.listener, versionInfo: before.versionInfo, responseNonce: before.nonce });
    policies.set(parsePolicyText('apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: prod}\nspec: {mtls: {mode: STRICT}}\n', 'strict.yaml').documents);
    const after = await c.next();
    assert.equal(after.typeUrl, TYPE_URL.listener);
    assert.notEqual(Buffer.concat(after.resources.map((r) => r.value)).toString('hex'), Buffer.concat(before.resources.map((r) => r.value)).toString('hex'));
  });

  it('authorization: a workload gets only its own configuration; a node agent only for identities on its node', async () => {
    const other = connect(credentialFor(f.ca, workload('web', 'front')));
    other.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/prod/api') });
    const denied = await other.ended;
    assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
    assert.match(denied.details, /\/prod\/api runs as spiffe:\/\/cluster\.local\/ns\/prod\/sa\/api, not spiffe:\/\/cluster\.local\/ns\/web\/sa\/front/);

    const agentCred = credentialFor(f.ca, node('agent-1'));
    const notPlaced = connect(agentCred, { [IDENTITY_HEADER]: 'spiffe://cluster.local/ns/prod/sa/api' });
    notPlaced.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/prod/api') });
    assert.equal((await notPlaced.ended).code, grpc.status.PERMISSION_DENIED);

    placeApp(f.view, '/prod/api', 'prod', 'api', ['agent-1']);
    const proxied = connect(agentCred, { [IDENTITY_HEADER]: 'spiffe://cluster.local/ns/prod/sa/api' });
    proxied.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/prod/api', '10.1.0.9') });
    const cds = await proxied.next();
    assert.equal(cds.typeUrl, TYPE_URL.cluster);
    assert.equal(xds.status().find((p) => p.nodeId.includes('10.1.0.9'))!.via, 'agent-1');

    const anonymous = connect(agentCred); // a node without naming anyone
    anonymous.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/prod/api') });
    assert.equal((await anonymous.ended).code, grpc.status.INVALID_ARGUMENT);
  });

  it('a client that half-closes its stream (grpc-js-xds when its last watch is cancelled) gets the call ended, OK, and leaves proxy-status', async () => {
    const c = connect(credentialFor(f.ca, workload('web', 'front')));
    c.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front', '10.0.0.77') });
    await c.next();
    assert.ok(xds.status().some((p) => p.nodeId.includes('10.0.0.77')));
    c.call.end();
    const end = await Promise.race([c.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
    assert.equal(end?.code, grpc.status.OK, 'the server ends a half-closed stream instead of pushing to it forever');
    await waitFor('the proxy gone from proxy-status', () => !xds.status().some((p) => p.nodeId.includes('10.0.0.77')));
  });

  it('a gRPC node that unsubscribes its last Listener (an empty name list) gets no answer: for gRPC, empty is none, never the wildcard', async () => {
    const c = connect(credentialFor(f.ca, workload('web', 'front')));
    const grpcNode = { ...nodeOf('/web/front', '10.0.0.78'), id: 'grpc~10.0.0.78~web_front.1', metadata: { CITADEL_MARATHON_ID: '/web/front', CITADEL_GENERATOR: 'grpc' } };
    c.send({ typeUrl: TYPE_URL.listener, node: grpcNode, resourceNames: ['api-prod.marathon.mesos:8080'] });
    const lds = await c.next();
    assert.deepEqual(names(lds, 'envoy.config.listener.v3.Listener'), ['api-prod.marathon.mesos:8080']);
    c.send({ typeUrl: TYPE_URL.listener, versionInfo: lds.versionInfo, responseNonce: lds.nonce, resourceNames: [] });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.pending, 0, 'an unsubscribe is not answered');
    const status = xds.status().find((p) => p.nodeId === grpcNode.id)!;
    assert.equal(status.types.LDS.status, 'SYNCED');
    c.send({ typeUrl: TYPE_URL.listener, versionInfo: lds.versionInfo, responseNonce: lds.nonce, resourceNames: ['api-prod.marathon.mesos:8080'] });
    assert.deepEqual(names(await c.next(), 'envoy.config.listener.v3.Listener'), ['api-prod.marathon.mesos:8080'], 'subscribed again: sent again');
  });
});

describe('proxyNodeOf: the node as the generators see it', () => {
  const identity = workload('web', 'front');
  const xdsNode = (metadata: Record<string, string>) => ({ id: 'sidecar~10.0.0.5~web_front.1', cluster: '/web/front', metadata: { CITADEL_MARATHON_ID: '/web/front', ...metadata }, userAgentName: 'envoy', userAgentVersion: '1.40.0' });

  it('files mode: the certificate directory the bootstrap names (CITADEL_CERTS_DIR), else none (the generators use /etc/certs)', () => {
    assert.equal(proxyNodeOf(xdsNode({ CITADEL_CERT_MODE: 'files', CITADEL_CERTS_DIR: '/var/lib/citadel/certs/web/front' }), identity).certsDir, '/var/lib/citadel/certs/web/front');
    assert.equal(proxyNodeOf(xdsNode({ CITADEL_CERT_MODE: 'files' }), identity).certsDir, undefined);
    assert.equal(proxyNodeOf(xdsNode({ CITADEL_CERT_MODE: 'sds', CITADEL_CERTS_DIR: '/x' }), identity).certsDir, undefined, 'sds mode reads no files');
  });

  it('a certificate directory that is not a clean absolute path is refused, naming the key', () => {
    for (const bad of ['certs', '/etc/../root', '/etc/certs\n/x', '/etc//certs']) {
      assert.throws(() => proxyNodeOf(xdsNode({ CITADEL_CERT_MODE: 'files', CITADEL_CERTS_DIR: bad }), identity), (err: Error & { code?: number }) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.message, /node\.metadata\.CITADEL_CERTS_DIR: .* is not an absolute directory path/);
        return true;
      });
    }
  });
});
