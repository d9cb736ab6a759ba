/**
 * Generated configuration in real Envoys: a server sidecar for /prod/api with one port per mTLS
 * mode (STRICT, PERMISSIVE, DISABLE by port-level PeerAuthentication) and a client sidecar for
 * /web/frontend calling each port through its generated upstream clusters. Resources go into the
 * bootstraps as static resources (EDS replaced by the ClusterLoadAssignment inline, RDS by the
 * RouteConfiguration inline, the rest as generated); the secrets come from SdsTestServer.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, it } from 'node:test';
import { EnvoyGenerator } from '../../../src/mesh/envoy';
import type { GeneratedResources } from '../../../src/mesh/resources';
import { assertStrictEnvoyMessage } from '../../helpers/envoy-proto';
import { describeWithEnvoy, EnvoyProcess, envoyValidate } from '../../helpers/envoy';
import { bundleFor, tempDir, testCa } from '../../helpers/pki';
import { SdsTestServer, sdsClusterFor } from '../../helpers/sds-test-server';
import { peerAuthentication } from '../policy/fixtures';
import { endpoint, inputsOf, proxyOf, service, snapshotOf } from '../mesh-fixtures';

type Obj = Record<string, any>;

/** Generated resources as a static bootstrap: EDS and RDS inlined, the rest as generated. */
function staticBootstrap(nodeId: string, r: GeneratedResources, sdsSocket: string): Obj {
  const assignment = (name: string) => r.endpoints.find((e) => e.name === name)!.json;
  const route = (name: string) => r.routes.find((x) => x.name === name)!.json;
  const clusters = r.clusters.map((c) => {
    const { eds_cluster_config: _eds, ...rest } = structuredClone(c.json) as Obj;
    return rest.type === 'EDS' ? { ...rest, type: 'STATIC', load_assignment: assignment(c.name) } : rest;
  });
  const inlineRds = (chain: Obj) => {
    for (const f of chain.filters) {
      const rds = f.typed_config.rds;
      if (rds === undefined) continue;
      delete f.typed_config.rds;
      f.typed_config.route_config = route(rds.route_config_name);
    }
  };
  const listeners = r.listeners.map((l) => {
    const json = structuredClone(l.json) as Obj;
    json.filter_chains.forEach(inlineRds);
    return json;
  });
  return { node: { id: nodeId, cluster: 'test' }, static_resources: { clusters: [sdsClusterFor(sdsSocket), ...clusters], listeners } };
}

function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Seen {
  port: number;
  xfcc?: string;
}

describeWithEnvoy('generated Envoy configuration between two real Envoys', () => {
  const dir = tempDir('citadel-generated-envoy-');
  const ca = testCa();
  const seen: Seen[] = [];
  const backends: http.Server[] = [];
  const sds: SdsTestServer[] = [];
  const envoys: EnvoyProcess[] = [];
  const ports = { strict: 0, permissive: 0, disable: 0 };
  const local = { strict: 0, permissive: 0, disable: 0 };

  before(async () => {
    // The app listens on 127.0.0.1:<port>; its sidecar binds <instanceIp>:<port> = 127.0.0.2:<port>.
    for (const mode of ['strict', 'permissive', 'disable'] as const) {
      const server = http.createServer((req, res) => {
        const port = (req.socket.address() as AddressInfo).port;
        seen.push({ port, ...(req.headers['x-forwarded-client-cert'] !== undefined && { xfcc: String(req.headers['x-forwarded-client-cert']) }) });
        res.end(mode);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      backends.push(server);
      ports[mode] = (server.address() as AddressInfo).port;
      local[mode] = await freePort();
    }
    const api = service({
      marathonId: '/prod/api',
      serviceAccount: 'api',
      labels: { app: 'api' },
      ports: [
        { name: 'http-strict', port: ports.strict, protocol: 'http' },
        { name: 'http-permissive', port: ports.permissive, protocol: 'http' },
        { name: 'http-plain', port: ports.disable, protocol: 'http' },
      ],
      endpoints: [endpoint('127.0.0.2', [ports.strict, ports.permissive, ports.disable])],
    });
    const web = service({
      marathonId: '/web/frontend',
      serviceAccount: 'frontend',
      ports: [{ name: 'http', port: await freePort('127.0.0.3'), protocol: 'http' }],
      upstreams: [
        { service: `/prod/api:${ports.strict}`, localPort: local.strict },
        { service: `/prod/api:${ports.permissive}`, localPort: local.permissive },
        { service: `/prod/api:http-plain`, localPort: local.disable },
      ],
    });
    const policies = [
      peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }),
      peerAuthentication('prod', 'api', { selector: { app: 'api' }, mtls: 'UNSET', ports: { [ports.permissive]: 'PERMISSIVE', [ports.disable]: 'DISABLE' } }),
    ];
    const inputs = inputsOf(snapshotOf([api, web]), policies);
    const generator = new EnvoyGenerator();
    const nodes = [
      { node: proxyOf(api, { instanceIp: '127.0.0.2' }), bundle: bundleFor(ca, 'prod', 'api') },
      { node: proxyOf(web, { instanceIp: '127.0.0.3' }), bundle: bundleFor(ca, 'web', 'frontend') },
    ];
    for (const [i, { node, bundle }] of nodes.entries()) {
      const resources = generator.generate(inputs, node);
      assert.deepEqual(resources.warnings, []);
      const server = await SdsTestServer.start(path.join(dir, `sds-${i}.sock`), bundle);
      sds.push(server);
      const bootstrap = staticBootstrap(node.id, resources, server.socketPath);
      assertStrictEnvoyMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrap);
      envoys.push(await EnvoyProcess.start({ config: bootstrap }));
    }
  });

  after(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await Promise.all(sds.map((s) => s.close()));
    await Promise.all(backends.map((b) => new Promise((resolve) => b.close(resolve))));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A request with a forged x-forwarded-client-cert, which no mode may pass on. */
  async function get(host: string, port: number): Promise<{ status: number; body: string; seen?: Seen } | { error: string }> {
    const before = seen.length;
    try {
      const res = await fetch(`http://${host}:${port}/`, { headers: { 'x-forwarded-client-cert': 'By=forged;URI=spiffe://evil/ns/x/sa/y' }, signal: AbortSignal.timeout(5000) });
      return { status: res.status, body: await res.text(), ...(seen.length > before && { seen: seen[seen.length - 1] }) };
    } catch (err) {
      assert.equal(seen.length, before, 'a refused request never reaches the app');
      return { error: String((err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message) };
    }
  }

  const XFCC_FROM_WEB = /^By=spiffe:\/\/cluster\.local\/ns\/prod\/sa\/api;Hash=[0-9a-f]{64};URI=spiffe:\/\/cluster\.local\/ns\/web\/sa\/frontend$/;

  it('STRICT accepts the mTLS client Envoy and hands the app its SPIFFE ID in x-forwarded-client-cert', async () => {
    const r = await get('127.0.0.1', local.strict);
    assert.ok('status' in r, JSON.stringify(r));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.seen?.port, ports.strict);
    assert.match(r.seen?.xfcc ?? '', XFCC_FROM_WEB);
  });

  it('STRICT refuses plaintext and a TLS client without a mesh certificate', async () => {
    const r = await get('127.0.0.2', ports.strict);
    assert.deepEqual(r, { error: 'UND_ERR_SOCKET' }, 'plaintext: the socket is closed');
    const noCert = await tlsProbe(ports.strict, {});
    assert.match(noCert, /ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED/, noCert);
  });

  it('PERMISSIVE accepts the mTLS client Envoy (XFCC set) and plaintext (XFCC stripped)', async () => {
    const mtls = await get('127.0.0.1', local.permissive);
    assert.ok('status' in mtls && mtls.status === 200, JSON.stringify(mtls));
    assert.match(mtls.seen?.xfcc ?? '', XFCC_FROM_WEB);
    const plain = await get('127.0.0.2', ports.permissive);
    assert.ok('status' in plain && plain.status === 200, JSON.stringify(plain));
    assert.equal(plain.seen?.port, ports.permissive);
    assert.equal(plain.seen?.xfcc, undefined, 'the forged header is removed');
  });

  it('DISABLE takes plaintext (the client Envoy sends plaintext to it) and refuses TLS', async () => {
    const viaClient = await get('127.0.0.1', local.disable);
    assert.ok('status' in viaClient && viaClient.status === 200, JSON.stringify(viaClient));
    assert.equal(viaClient.seen?.xfcc, undefined);
    const plain = await get('127.0.0.2', ports.disable);
    assert.ok('status' in plain && plain.status === 200, JSON.stringify(plain));
    const bundle = bundleFor(ca, 'web', 'frontend');
    const withCert = await tlsProbe(ports.disable, { cert: bundle.certChainPem, key: bundle.keyPem, ca: bundle.rootCertPem });
    assert.match(withCert, /ERR_SSL_WRONG_VERSION_NUMBER/, withCert);
  });

  it('the server Envoy counted mTLS handshakes on the STRICT and PERMISSIVE ports only', async () => {
    const stats = await envoys[0].stats('^listener\\.127\\.0\\.0\\.2_\\d+\\.ssl\\.handshake$');
    assert.ok((stats.get(`listener.127.0.0.2_${ports.strict}.ssl.handshake`) ?? 0) >= 1, JSON.stringify([...stats]));
    assert.ok((stats.get(`listener.127.0.0.2_${ports.permissive}.ssl.handshake`) ?? 0) >= 1, JSON.stringify([...stats]));
    assert.equal(stats.get(`listener.127.0.0.2_${ports.disable}.ssl.handshake`) ?? 0, 0);
  });

  /** A TLS handshake straight at the server sidecar's port, then a request: what came back, or the error. */
  function tlsProbe(port: number, options: tls.ConnectionOptions): Promise<string> {
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.2', port, rejectUnauthorized: false, ...options }, () => {
        socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      });
      let data = '';
      socket.setTimeout(5000, () => socket.destroy(new Error('no answer in 5 s')));
      socket.on('data', (d) => (data += d));
      socket.on('close', () => resolve(data.split('\r\n')[0] || 'closed with no response'));
      socket.on('error', (e) => resolve(`${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`));
    });
  }
});

describeWithEnvoy('generated redirect-capture configuration', () => {
  it('passes envoy --mode validate (original_dst, tls_inspector, ORIGINAL_DST clusters, chains by original destination)', async () => {
    const api = service({
      marathonId: '/prod/api',
      ports: [{ name: 'http', port: 8080, protocol: 'http' }, { name: 'tcp', port: 5432, protocol: 'tcp' }],
      endpoints: [endpoint('10.1.0.2', [31000, 31001]), endpoint('10.1.0.3', [31000, 31002])],
    });
    const web = service({ marathonId: '/web/frontend', upstreams: [{ service: '/prod/api', localPort: 15080 }, { service: '/prod/api:tcp', localPort: 15432 }] });
    const policies = [peerAuthentication('web', 'default', { mtls: 'PERMISSIVE' }), peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })];
    const r = new EnvoyGenerator().generate(inputsOf(snapshotOf([api, web]), policies), proxyOf(web, { capture: 'redirect' }));
    const bootstrap = staticBootstrap('sidecar~10.0.0.5~web', r, '/nonexistent/sds.sock');
    const result = await envoyValidate(bootstrap);
    assert.ok(result.ok, result.output);
  });
});
