/**
 * The xDS server beyond ADS: the per-type services an Envoy without ADS uses (StreamClusters,
 * StreamEndpoints, ...), and the push debounce at its defaults: a burst of Marathon changes is one
 * push carrying the last state, and changes that never pause are still pushed within the maximum delay.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { envoyProtoRoot } from '../../src/api/envoy-protos';
import { silentLogger } from '../../src/common/log';
import type { MeshSnapshot } from '../../src/mesh/model';
import type { PolicyDocument } from '../../src/mesh/policy';
import { TYPE_URL } from '../../src/mesh/resources';
import { ServerCertificate } from '../../src/server/server-certificate';
import { XdsServer } from '../../src/server/xds-server';
import { endpoint, service, snapshotOf } from '../mesh/mesh-fixtures';
import { AdsClient, Changing, names, nodeOf, serviceFor } from '../helpers/ads-client';
import { CaFixture, credentialFor, startCaFixture, workload } from './fixtures';

const CLUSTER = 'outbound|8080||api-prod.marathon.mesos';

function endpointCount(r: { resources: Array<{ value: Buffer }> }): number {
  const type = envoyProtoRoot().lookupType('envoy.config.endpoint.v3.ClusterLoadAssignment');
  const cla = type.toObject(type.decode(r.resources[0].value)) as { endpoints?: Array<{ lb_endpoints?: unknown[] }> };
  return (cla.endpoints ?? []).flatMap((e) => e.lb_endpoints ?? []).length;
}

describe('the xDS server: per-type services and the push debounce', () => {
  let f: CaFixture;
  let xds: XdsServer;
  let address: string;
  const api = (n: number) => service({ marathonId: '/prod/api', serviceAccount: 'api', endpoints: Array.from({ length: n }, (_, i) => endpoint(`10.1.0.${i + 2}`, [8080])) });
  const web = service({ marathonId: '/web/front', serviceAccount: 'front', upstreams: [{ service: '/prod/api', localPort: 15080 }] });
  let version = 1;
  const mesh = new Changing<MeshSnapshot>(snapshotOf([api(1), web], version));
  const setEndpoints = (n: number) => mesh.set(snapshotOf([api(n), web], ++version));
  const policies = new Changing<readonly PolicyDocument[]>([]);
  const clients: AdsClient[] = [];
  const connect = (method = serviceFor(TYPE_URL.endpoint)) => {
    const c = new AdsClient(address, f.ca.rootCertPem, credentialFor(f.ca, workload('web', 'front')), {}, method);
    clients.push(c);
    return c;
  };

  before(async () => {
    f = await startCaFixture();
    xds = new XdsServer({
      trustDomain: 'cluster.local',
      serverCertificate: new ServerCertificate(f.ca, [], silentLogger),
      placements: f.view,
      mesh: { current: () => mesh.value, onChange: (l) => mesh.onChange(l) },
      policies: { current: () => policies.value, onChange: (l) => policies.onChange(l) },
      port: 0,
      host: '127.0.0.1',
      logger: silentLogger,
      registry: new Registry(),
      // the defaults: 100 ms quiet, at most 1 s after the first change
    });
    address = `127.0.0.1:${await xds.start()}`;
  });
  after(async () => {
    for (const c of clients) c.close();
    await xds.close();
    await f.close();
  });

  it('StreamClusters and StreamEndpoints serve their type without ADS; another type on them is INVALID_ARGUMENT', async () => {
    const cds = connect(serviceFor(TYPE_URL.cluster));
    cds.send({ typeUrl: TYPE_URL.cluster, node: nodeOf('/web/front') });
    const clusters = await cds.next();
    assert.equal(clusters.typeUrl, TYPE_URL.cluster);
    assert.ok(names(clusters, 'envoy.config.cluster.v3.Cluster').includes(CLUSTER));

    const eds = connect();
    eds.send({ typeUrl: TYPE_URL.endpoint, node: nodeOf('/web/front'), resourceNames: [CLUSTER] });
    const cla = await eds.next();
    assert.deepEqual(names(cla, 'envoy.config.endpoint.v3.ClusterLoadAssignment'), [CLUSTER]);

    const lds = connect(serviceFor(TYPE_URL.listener));
    lds.send({ typeUrl: TYPE_URL.listener, node: nodeOf('/web/front') });
    assert.equal((await lds.next()).typeUrl, TYPE_URL.listener);

    const wrong = connect(serviceFor(TYPE_URL.cluster));
    wrong.send({ typeUrl: TYPE_URL.listener, node: nodeOf('/web/front') });
    const end = await wrong.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /this service serves type\.googleapis\.com\/envoy\.config\.cluster\.v3\.Cluster, not type\.googleapis\.com\/envoy\.config\.listener\.v3\.Listener/);
  });

  it('five changes 20 ms apart are one push, 100 ms after the last, carrying the last state', async () => {
    const c = connect();
    c.send({ typeUrl: TYPE_URL.endpoint, node: nodeOf('/web/front'), resourceNames: [CLUSTER] });
    const first = await c.next();
    c.send({ typeUrl: TYPE_URL.endpoint, versionInfo: first.versionInfo, responseNonce: first.nonce, resourceNames: [CLUSTER] });
    const base = endpointCount(first);
    let lastChange = 0;
    for (let i = 1; i <= 5; i++) {
      setEndpoints(base + i);
      lastChange = Date.now();
      await new Promise((r) => setTimeout(r, 20));
    }
    const pushed = await c.next();
    const waited = Date.now() - lastChange;
    assert.equal(endpointCount(pushed), base + 5, 'the last state, not an intermediate one');
    assert.ok(waited >= 80, `pushed ${waited} ms after the last change: the 100 ms quiet period was kept`);
    c.send({ typeUrl: TYPE_URL.endpoint, versionInfo: pushed.versionInfo, responseNonce: pushed.nonce, resourceNames: [CLUSTER] });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.pending, 0, 'one push for the burst');
  });

  it('changes that never pause for 100 ms are still pushed within the 1 s maximum delay', async () => {
    const c = connect();
    c.send({ typeUrl: TYPE_URL.endpoint, node: nodeOf('/web/front'), resourceNames: [CLUSTER] });
    const first = await c.next();
    c.send({ typeUrl: TYPE_URL.endpoint, versionInfo: first.versionInfo, responseNonce: first.nonce, resourceNames: [CLUSTER] });
    const started = Date.now();
    let n = endpointCount(first);
    const churn = setInterval(() => setEndpoints(++n), 50);
    try {
      const pushed = await c.next(6000);
      const after = Date.now() - started;
      assert.ok(after >= 900 && after < 4000, `first push ${after} ms after the first of the unbroken changes (maximum delay 1 s)`);
      assert.ok(endpointCount(pushed) > endpointCount(first));
    } finally {
      clearInterval(churn);
    }
  });
});
