/**
 * The xDS server over mTLS with a real gRPC client speaking ADS as Envoy does: authorization by
 * certificate (and by node for the agent's proxy), the ADS order, ACK/NACK, pushes on mesh and
 * policy changes, EDS again after CDS, proxy status.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import * as http2 from 'node:http2';
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
import { ADS, AdsClient, Changing, names, nodeOf } from '../helpers/ads-client';
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

  it('a files-mode sidecar gets its file-based secrets over ADS, by name only; a push that changes clusters sends SDS again, last; proxy-status shows SDS', async () => {
    const c = connect(credentialFor(f.ca, workload('web', 'front')));
    const dir = '/certs/web/front';
    const certName = `file-cert:${dir}/cert-chain.pem~${dir}/key.pem`;
    const rootName = `file-root:${dir}/root-cert.pem`;
    const filesNode = { ...nodeOf('/web/front', '10.0.0.31'), metadata: { CITADEL_MARATHON_ID: '/web/front', CITADEL_CERT_MODE: 'files', CITADEL_CERTS_DIR: dir } };
    const statusOf = () => xds.status().find((p) => p.nodeId === filesNode.id)!;
    c.send({ typeUrl: TYPE_URL.cluster, node: filesNode });
    const cds = await c.next();
    const tlsCluster = cds.resources.find((r) => r.value.includes('outbound|8080||api-prod.marathon.mesos'))!;
    assert.ok(tlsCluster.value.includes(certName) && tlsCluster.value.includes(rootName), 'the cluster’s TLS context names both secrets');
    assert.equal(statusOf().types.SDS.status, 'NOT SENT', 'a files-mode sidecar is expected to ask for SDS');
    c.send({ typeUrl: TYPE_URL.endpoint, resourceNames: ['outbound|8080||api-prod.marathon.mesos'] });
    const eds = await c.next();
    c.send({ typeUrl: TYPE_URL.endpoint, resourceNames: ['outbound|8080||api-prod.marathon.mesos'], versionInfo: eds.versionInfo, responseNonce: eds.nonce });
    c.send({ typeUrl: TYPE_URL.cluster, versionInfo: cds.versionInfo, responseNonce: cds.nonce });

    // Asked by name, as Envoy does while it warms the cluster: the two secrets, file names and the watched directory, no key material.
    c.send({ typeUrl: TYPE_URL.secret, resourceNames: [certName, rootName] });
    const sds = await c.next();
    assert.equal(sds.typeUrl, TYPE_URL.secret);
    const Secret = envoyProtoRoot().lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
    const secrets = sds.resources.map((r) => Secret.toObject(Secret.decode(r.value)) as Record<string, any>);
    assert.deepEqual(secrets.map((x) => x.name), [certName, rootName]);
    assert.deepEqual(secrets[0].tls_certificate, { certificate_chain: { filename: `${dir}/cert-chain.pem` }, private_key: { filename: `${dir}/key.pem` }, watched_directory: { path: dir } });
    assert.deepEqual(secrets[1].validation_context, { trusted_ca: { filename: `${dir}/root-cert.pem` }, watched_directory: { path: dir } });
    c.send({ typeUrl: TYPE_URL.secret, resourceNames: [certName, rootName], versionInfo: sds.versionInfo, responseNonce: sds.nonce });
    await waitFor('SDS synced in proxy status', () => statusOf().types.SDS.status === 'SYNCED');

    // The cluster to the API changes (a DestinationRule): CDS, EDS again, and SDS again after everything else.
    const before = policies.value;
    policies.set([...before, ...parsePolicyText('apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: api, namespace: prod}\nspec: {host: api-prod.marathon.mesos, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/prod/sa/other]}}}\n', 'dr.yaml').documents]);
    const pushed: string[] = [];
    let pushedSds;
    while (!pushedSds) {
      const r = await c.next();
      pushed.push(r.typeUrl);
      if (r.typeUrl === TYPE_URL.secret) pushedSds = r;
    }
    assert.deepEqual([pushed[0], pushed[1], pushed[pushed.length - 1]], [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.secret], pushed.join(', '));
    assert.deepEqual(names(pushedSds, 'envoy.extensions.transport_sockets.tls.v3.Secret'), [certName, rootName], 'both, though unchanged: a TLS context built for the new cluster may wait for them');

    // A name the generator did not make is not served (the server never reads or names other files).
    c.send({ typeUrl: TYPE_URL.secret, resourceNames: [certName, rootName, 'file-cert:/etc/shadow~/etc/shadow'], versionInfo: pushedSds.versionInfo, responseNonce: pushedSds.nonce });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.pending, 0, 'nothing for a name that is not generated');

    // An sds-mode sidecar gets its secrets from the node agent: no SDS in its status.
    const other = connect(credentialFor(f.ca, workload('web', 'front')));
    other.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front', '10.0.0.32') });
    await other.next();
    assert.equal(xds.status().find((p) => p.nodeId === nodeOf('/web/front', '10.0.0.32').id)!.types.SDS, undefined);
  });

  it('a request answered between a change and its push (a new EDS name) does not swallow the push of the other types', async () => {
    // A server that waits 400 ms before pushing, so the request surely comes in between.
    const policies2 = new Changing<readonly PolicyDocument[]>([]);
    const slow = new XdsServer({
      trustDomain: 'cluster.local',
      serverCertificate: new ServerCertificate(f.ca, [], silentLogger),
      placements: f.view,
      mesh: { current: () => mesh.value, onChange: () => () => undefined },
      policies: { current: () => policies2.value, onChange: (l) => policies2.onChange(l) },
      port: 0,
      host: '127.0.0.1',
      logger: silentLogger,
      registry: new Registry(),
      quietMs: 400,
      maxDelayMs: 2000,
    });
    const c = new AdsClient(`127.0.0.1:${await slow.start()}`, f.ca.rootCertPem, credentialFor(f.ca, workload('web', 'front')));
    try {
      const cluster = 'outbound|8080||api-prod.marathon.mesos';
      c.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front', '10.0.0.33') });
      const cds = await c.next();
      c.send({ typeUrl: TYPE_URL.endpoint, resourceNames: [cluster] });
      const eds = await c.next();
      c.send({ typeUrl: TYPE_URL.cluster, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
      policies2.set(parsePolicyText('apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: api, namespace: prod}\nspec: {host: api-prod.marathon.mesos, trafficPolicy: {tls: {mode: DISABLE}}}\n', 'dr.yaml').documents);
      // Envoy asks for a new name meanwhile: answered from the new policy, for EDS only.
      c.send({ typeUrl: TYPE_URL.endpoint, resourceNames: [cluster, 'outbound|1||nothing.marathon.mesos'], versionInfo: eds.versionInfo, responseNonce: eds.nonce });
      const pushed = await c.next(3000);
      assert.equal(pushed.typeUrl, TYPE_URL.cluster, 'the changed cluster is still pushed');
      assert.notEqual(Buffer.concat(pushed.resources.map((r) => r.value)).toString('hex'), Buffer.concat(cds.resources.map((r) => r.value)).toString('hex'));
    } finally {
      c.close();
      await slow.close();
    }
  });

  it('a stream opened after the client certificate expired, on a connection that outlived it: UNAUTHENTICATED, and the connection is closed so the client dials again', async () => {
    const cred = credentialFor(f.ca, workload('web', 'front'), 3000);
    const expires = Date.parse(new X509Certificate(cred.certChainPem).validTo);
    const session = http2.connect(`https://${address}`, { ca: f.ca.rootCertPem, cert: cred.certChainPem, key: cred.keyPem, servername: 'istiod', ALPNProtocols: ['h2'] });
    session.on('error', () => undefined);
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    const frame = (r: Partial<DiscoveryRequest>) => {
      const bytes = ADS.requestSerialize({ versionInfo: '', resourceNames: [], typeUrl: TYPE_URL.cluster, responseNonce: '', ...r });
      return Buffer.concat([Buffer.from([0, bytes.length >>> 24, (bytes.length >>> 16) & 255, (bytes.length >>> 8) & 255, bytes.length & 255]), bytes]);
    };
    const open = () => session.request({ ':method': 'POST', ':path': ADS.path, 'content-type': 'application/grpc', te: 'trailers' });
    try {
      const first = open();
      first.write(frame({ node: nodeOf('/web/front', '10.0.0.34') }));
      await new Promise((resolve) => first.once('data', resolve));
      await waitFor('the certificate to expire', () => Date.now() > expires + 100, 10_000);
      const second = open();
      second.end(frame({ node: nodeOf('/web/front', '10.0.0.34') }));
      const status = await new Promise<string | undefined>((resolve) => {
        second.once('response', (h) => h['grpc-status'] !== undefined && resolve(String(h['grpc-status'])));
        second.once('trailers', (h) => resolve(String(h['grpc-status'])));
      });
      assert.equal(status, String(grpc.status.UNAUTHENTICATED));
      await waitFor('GOAWAY on that connection', () => goaway, 5000);
      first.close();
    } finally {
      session.destroy();
    }
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
