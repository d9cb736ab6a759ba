import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EnvoyGenerator, generateEnvoy, SDS_CONFIG } from '../../../src/mesh/envoy';
import type { MeshService } from '../../../src/mesh/model';
import type { PolicyDocument } from '../../../src/mesh/policy';
import type { GeneratedResources, XdsResource } from '../../../src/mesh/resources';
import { assertStrictEnvoyMessage } from '../../helpers/envoy-proto';
import { destinationRule, meshPolicy, namespacePolicy, peerAuthentication, targetPolicy } from '../policy/fixtures';
import { endpoint, inputsOf, proxyOf, service, snapshotOf } from '../mesh-fixtures';

type Obj = Record<string, any>;

const MESSAGE: Record<string, string> = {
  'type.googleapis.com/envoy.config.cluster.v3.Cluster': 'envoy.config.cluster.v3.Cluster',
  'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment': 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  'type.googleapis.com/envoy.config.listener.v3.Listener': 'envoy.config.listener.v3.Listener',
  'type.googleapis.com/envoy.config.route.v3.RouteConfiguration': 'envoy.config.route.v3.RouteConfiguration',
  'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret': 'envoy.extensions.transport_sockets.tls.v3.Secret',
};

function assertAllStrict(r: GeneratedResources): void {
  for (const res of [...r.clusters, ...r.endpoints, ...r.listeners, ...r.routes, ...r.secrets]) {
    assert.equal(res.json.name ?? res.json.cluster_name, res.name, `${res.name}: the resource's own name`);
    assertStrictEnvoyMessage(MESSAGE[res.typeUrl], res.json);
  }
}

const named = (list: readonly XdsResource[], name: string): Obj => {
  const r = list.find((x) => x.name === name);
  assert.ok(r, `no ${name} among ${list.map((x) => x.name).join(', ')}`);
  return r.json as Obj;
};

/** The API: http 8080, grpc 9090, tcp 5432; two healthy endpoints, one failing. */
const api = service({
  marathonId: '/prod/payments/api',
  serviceAccount: 'payments',
  labels: { app: 'api' },
  ports: [
    { name: 'http', port: 8080, protocol: 'http' },
    { name: 'grpc', port: 9090, protocol: 'grpc' },
    { name: 'tcp-db', port: 5432, protocol: 'tcp' },
  ],
  endpoints: [endpoint('10.1.0.2', [8080, 9090, 5432]), endpoint('10.1.0.3', [8080, 9090, 5432]), endpoint('10.1.0.4', [8080, 9090, 5432], false)],
});
const legacy = service({ marathonId: '/legacy/report', hasSidecar: false, endpoints: [endpoint('10.2.0.2', [31000])] });
const web = service({
  marathonId: '/web/frontend',
  serviceAccount: 'frontend',
  upstreams: [
    { service: '/prod/payments/api', localPort: 15080 },
    { service: 'api-payments-prod.marathon.mesos:grpc', localPort: 15090 },
    { service: '/prod/payments/api:5432', localPort: 15432 },
    { service: 'report-legacy.marathon.mesos', localPort: 15100 },
  ],
  endpoints: [endpoint('10.3.0.2', [8080])],
});
const mesh = snapshotOf([api, legacy, web]);

/** The mTLS mode a generated inbound listener (or virtualInbound's chains for one port) enforces. */
function modeOfChains(chains: Obj[], listenerFilters: Obj[] = []): string {
  const sniffs = listenerFilters.some((f) => f.name === 'envoy.filters.listener.tls_inspector');
  const tls = chains.filter((c) => c.transport_socket);
  const plain = chains.filter((c) => !c.transport_socket);
  for (const c of tls) assert.equal(c.transport_socket.typed_config.require_client_certificate, true, 'a TLS chain requires a client certificate');
  if (tls.length === 1 && plain.length === 0) return 'STRICT';
  if (tls.length === 0 && plain.length === 1) return 'DISABLE';
  if (tls.length === 1 && plain.length === 1) {
    assert.ok(sniffs, 'PERMISSIVE needs tls_inspector');
    assert.equal(tls[0].filter_chain_match.transport_protocol, 'tls');
    assert.equal(plain[0].filter_chain_match.transport_protocol, 'raw_buffer');
    return 'PERMISSIVE';
  }
  throw new Error(`unexpected chains: ${JSON.stringify(chains)}`);
}

function inboundModes(policies: PolicyDocument[], s: MeshService = api): Record<number, string> {
  const r = generateEnvoy(inputsOf(snapshotOf([s]), policies), proxyOf(s));
  return Object.fromEntries(
    s.ports.map((p) => {
      const l = named(r.listeners, `inbound|10.0.0.5|${p.port}`);
      return [p.port, modeOfChains(l.filter_chains, l.listener_filters)];
    }),
  );
}

describe('Envoy inbound listeners follow PeerAuthentication and Policy', () => {
  const rows: Array<[string, PolicyDocument[], Record<number, string>]> = [
    ['no policy: PERMISSIVE (Istio default)', [], { 8080: 'PERMISSIVE', 9090: 'PERMISSIVE', 5432: 'PERMISSIVE' }],
    ['mesh STRICT', [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })], { 8080: 'STRICT', 9090: 'STRICT', 5432: 'STRICT' }],
    [
      'namespace PERMISSIVE over mesh STRICT',
      [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }), peerAuthentication('prod', 'default', { mtls: 'PERMISSIVE' })],
      { 8080: 'PERMISSIVE', 9090: 'PERMISSIVE', 5432: 'PERMISSIVE' },
    ],
    [
      'workload DISABLE over namespace PERMISSIVE over mesh STRICT',
      [
        peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }),
        peerAuthentication('prod', 'default', { mtls: 'PERMISSIVE' }),
        peerAuthentication('prod', 'api', { selector: { app: 'api' }, mtls: 'DISABLE' }),
      ],
      { 8080: 'DISABLE', 9090: 'DISABLE', 5432: 'DISABLE' },
    ],
    [
      'port level: UNSET inherits STRICT, 8080 DISABLE, 5432 PERMISSIVE',
      [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }), peerAuthentication('prod', 'api', { selector: { app: 'api' }, mtls: 'UNSET', ports: { 8080: 'DISABLE', 5432: 'PERMISSIVE' } })],
      { 8080: 'DISABLE', 9090: 'STRICT', 5432: 'PERMISSIVE' },
    ],
    [
      'a selector that does not match changes nothing',
      [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }), peerAuthentication('prod', 'other', { selector: { app: 'other' }, mtls: 'DISABLE' })],
      { 8080: 'STRICT', 9090: 'STRICT', 5432: 'STRICT' },
    ],
    [
      'v1alpha1: MeshPolicy STRICT, a Policy naming the grpc port by name PERMISSIVE',
      [meshPolicy('STRICT'), targetPolicy('prod', 'grpc-permissive', [{ name: '/prod/payments/api', ports: [{ name: 'grpc' }] }], 'PERMISSIVE')],
      { 8080: 'STRICT', 9090: 'PERMISSIVE', 5432: 'STRICT' },
    ],
    ['v1alpha1: namespace Policy without peers is DISABLE', [meshPolicy('STRICT'), namespacePolicy('prod', undefined)], { 8080: 'DISABLE', 9090: 'DISABLE', 5432: 'DISABLE' }],
  ];
  for (const [what, policies, expected] of rows) {
    it(what, () => assert.deepEqual(inboundModes(policies), expected));
  }

  it('STRICT: SDS certificate and root, client certificate required, XFCC set from the verified URI SAN, app on loopback', () => {
    const r = generateEnvoy(inputsOf(mesh, [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]), proxyOf(api));
    assertAllStrict(r);
    const l = named(r.listeners, 'inbound|10.0.0.5|8080');
    assert.deepEqual(l.address, { socket_address: { address: '10.0.0.5', port_value: 8080 } });
    assert.equal(l.listener_filters, undefined, 'STRICT needs no tls_inspector');
    const [chain] = l.filter_chains;
    const tls = chain.transport_socket.typed_config;
    assert.equal(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
    assert.deepEqual(tls.common_tls_context, {
      tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: SDS_CONFIG }],
      validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: SDS_CONFIG },
      alpn_protocols: ['h2', 'http/1.1'],
    });
    const hcm = chain.filters[0].typed_config;
    assert.equal(hcm.forward_client_cert_details, 'SANITIZE_SET');
    assert.deepEqual(hcm.set_current_client_cert_details, { uri: true });
    assert.deepEqual(hcm.rds, { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: 'inbound|8080' });
    const route = named(r.routes, 'inbound|8080');
    assert.equal(route.virtual_hosts[0].routes[0].route.cluster, 'inbound|8080||');
    const app = named(r.clusters, 'inbound|8080||');
    assert.equal(app.type, 'STATIC');
    assert.deepEqual(app.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address, { socket_address: { address: '127.0.0.1', port_value: 8080 } });
    assert.ok(named(r.clusters, 'inbound|9090||').typed_extension_protocol_options, 'the grpc port speaks HTTP/2 to the app');
    const tcp = named(r.listeners, 'inbound|10.0.0.5|5432').filter_chains[0];
    assert.equal(tcp.filters[0].name, 'envoy.filters.network.tcp_proxy');
    assert.equal(tcp.filters[0].typed_config.cluster, 'inbound|5432||');
    assert.equal(tcp.transport_socket.typed_config.common_tls_context.alpn_protocols, undefined, 'no ALPN offered on a TCP port');
    assert.equal(r.routes.find((x) => x.name === 'inbound|5432'), undefined, 'no routes for TCP');
  });

  it('PERMISSIVE and DISABLE plaintext chains strip a forged x-forwarded-client-cert', () => {
    const r = generateEnvoy(inputsOf(mesh), proxyOf(api));
    const plaintext = named(r.listeners, 'inbound|10.0.0.5|8080').filter_chains.find((c: Obj) => !c.transport_socket);
    assert.equal(plaintext.filters[0].typed_config.forward_client_cert_details, 'SANITIZE');
    assert.equal(named(r.listeners, 'inbound|10.0.0.5|8080').continue_on_listener_filters_timeout, true);
  });

  it('files mode: the TLS contexts name file-based secrets over ADS, which the generator returns: file names under /etc/certs, the directory watched', () => {
    const r = generateEnvoy(inputsOf(mesh, [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]), proxyOf(api, { certMode: 'files' }));
    assertAllStrict(r);
    const ads = { ads: {}, resource_api_version: 'V3' };
    const certName = 'file-cert:/etc/certs/cert-chain.pem~/etc/certs/key.pem';
    const rootName = 'file-root:/etc/certs/root-cert.pem';
    const common = named(r.listeners, 'inbound|10.0.0.5|8080').filter_chains[0].transport_socket.typed_config.common_tls_context;
    assert.deepEqual(common.tls_certificate_sds_secret_configs, [{ name: certName, sds_config: ads }]);
    assert.deepEqual(common.validation_context_sds_secret_config, { name: rootName, sds_config: ads });
    assert.deepEqual(r.secrets.map((x) => [x.name, x.typeUrl]), [[certName, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret'], [rootName, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret']]);
    assert.deepEqual(named(r.secrets, certName), {
      name: certName,
      tls_certificate: { certificate_chain: { filename: '/etc/certs/cert-chain.pem' }, private_key: { filename: '/etc/certs/key.pem' }, watched_directory: { path: '/etc/certs' } },
    });
    assert.deepEqual(named(r.secrets, rootName), { name: rootName, validation_context: { trusted_ca: { filename: '/etc/certs/root-cert.pem' }, watched_directory: { path: '/etc/certs' } } });
    const contexts = JSON.stringify([...r.clusters, ...r.listeners]);
    assert.ok(!contexts.includes('sds-grpc'), 'no reference to the node agent’s SDS in files mode');
    assert.ok(!contexts.includes('filename'), 'no TLS context reads a file itself (Envoy would read it once)');
    assert.deepEqual([...new Set(secretRefs([...r.clusters, ...r.listeners]))].sort(), [certName, rootName], 'every secret named is served');
    assert.deepEqual(generateEnvoy(inputsOf(mesh), proxyOf(api)).secrets, [], 'sds mode: the node agent serves the secrets');
  });

  it('files mode with the proxy’s own certificate directory (node metadata CITADEL_CERTS_DIR): every secret names files there and watches it', () => {
    const generator = new EnvoyGenerator();
    const inputs = inputsOf(mesh, [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]);
    const dir = '/var/lib/citadel/certs/web/frontend';
    const r = generator.generate(inputs, proxyOf(web, { certMode: 'files', certsDir: dir }));
    assertAllStrict(r);
    const certName = `file-cert:${dir}/cert-chain.pem~${dir}/key.pem`;
    const rootName = `file-root:${dir}/root-cert.pem`;
    assert.deepEqual(r.secrets.map((x) => x.name), [certName, rootName]);
    assert.deepEqual(named(r.secrets, certName).tls_certificate.watched_directory, { path: dir });
    assert.deepEqual(named(r.secrets, rootName).validation_context.watched_directory, { path: dir });
    const inbound = named(r.listeners, 'inbound|10.0.0.5|8080').filter_chains[0].transport_socket.typed_config.common_tls_context;
    assert.equal(inbound.tls_certificate_sds_secret_configs[0].name, certName);
    assert.deepEqual(clusterTls(r, API_HTTP), { kind: 'istio-sds', sans: [API_ID], sni: API_SNI, alpn: ['istio'], root: rootName });
    assert.equal(named(r.clusters, API_HTTP).transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name, certName);
    assert.ok(!JSON.stringify(r).includes('/etc/certs'));
    // Another proxy of the same service with the default directory shares nothing that names files.
    const other = generator.generate(inputs, proxyOf(web, { id: 'sidecar~10.0.0.6~web_frontend.2', instanceIp: '10.0.0.6', certMode: 'files' }));
    assert.equal(clusterTls(other, API_HTTP).root, 'file-root:/etc/certs/root-cert.pem');
    assert.ok(!JSON.stringify(other).includes(dir));
  });
});

/** Every secret name an SdsSecretConfig over ADS names, anywhere in the resources. */
function secretRefs(resources: readonly XdsResource[]): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (v === null || typeof v !== 'object') return;
    const o = v as Obj;
    if (typeof o.name === 'string' && o.sds_config?.ads) out.push(o.name);
    Object.values(o).forEach(walk);
  };
  resources.forEach((r) => walk(r.json));
  return out;
}

/** What an outbound cluster's transport socket amounts to. */
function clusterTls(r: GeneratedResources, name: string): Obj {
  const c = named(r.clusters, name);
  if (!c.transport_socket) return { kind: 'plaintext' };
  const t = c.transport_socket.typed_config;
  const common = t.common_tls_context;
  const validation = common.combined_validation_context?.default_validation_context ?? common.validation_context;
  return {
    kind: common.tls_certificate_sds_secret_configs ? 'istio-sds' : common.tls_certificates ? 'certificate-files' : 'no-client-certificate',
    sans: (validation?.match_typed_subject_alt_names ?? []).map((m: Obj) => `${m.san_type}:${m.matcher.exact}`),
    sni: t.sni,
    alpn: common.alpn_protocols,
    ...(common.combined_validation_context && { root: common.combined_validation_context.validation_context_sds_secret_config.name }),
    ...(validation?.trusted_ca && { trustedCa: validation.trusted_ca.filename }),
    ...(common.tls_certificates && { cert: common.tls_certificates[0].certificate_chain.filename }),
  };
}

const API_ID = 'URI:spiffe://cluster.local/ns/prod/sa/payments';
const API_HTTP = 'outbound|8080||api-payments-prod.marathon.mesos';
const API_SNI = 'outbound_.8080_._.api-payments-prod.marathon.mesos';
const ISTIO = { kind: 'istio-sds', sans: [API_ID], sni: API_SNI, alpn: ['istio'], root: 'ROOTCA' };

describe('Envoy outbound clusters follow DestinationRules and auto mTLS', () => {
  const tlsTo = (policies: PolicyDocument[], cluster = API_HTTP) => clusterTls(generateEnvoy(inputsOf(mesh, policies), proxyOf(web)), cluster);
  const rows: Array<[string, PolicyDocument[], string, Obj]> = [
    ['no rule, destination has a sidecar: ISTIO_MUTUAL (auto mTLS)', [], API_HTTP, ISTIO],
    ['no rule, destination without a sidecar: plaintext', [], 'outbound|8080||report-legacy.marathon.mesos', { kind: 'plaintext' }],
    ['DestinationRule DISABLE', [destinationRule('web', 'api', '/prod/payments/api', { mode: 'DISABLE' })], API_HTTP, { kind: 'plaintext' }],
    [
      'DestinationRule ISTIO_MUTUAL to a destination without a sidecar: as asked',
      [destinationRule('istio-system', 'all', '*.marathon.mesos', { mode: 'ISTIO_MUTUAL' })],
      'outbound|8080||report-legacy.marathon.mesos',
      { ...ISTIO, sans: ['URI:spiffe://cluster.local/ns/legacy/sa/default'], sni: 'outbound_.8080_._.report-legacy.marathon.mesos' },
    ],
    [
      'destination sidecar DISABLE: plaintext even with no rule',
      [peerAuthentication('prod', 'api', { selector: { app: 'api' }, mtls: 'DISABLE' })],
      API_HTTP,
      { kind: 'plaintext' },
    ],
    [
      'destination sidecar DISABLE beats an ISTIO_MUTUAL rule',
      [peerAuthentication('prod', 'api', { selector: { app: 'api' }, mtls: 'DISABLE' }), destinationRule('web', 'api', '/prod/payments/api', { mode: 'ISTIO_MUTUAL' })],
      API_HTTP,
      { kind: 'plaintext' },
    ],
    [
      'destination DISABLE only on another port: mTLS here',
      [peerAuthentication('prod', 'api', { selector: { app: 'api' }, mtls: 'STRICT', ports: { 5432: 'DISABLE' } })],
      API_HTTP,
      ISTIO,
    ],
    [
      'port-level DISABLE beats the rule-wide ISTIO_MUTUAL',
      [destinationRule('web', 'api', 'api-payments-prod.marathon.mesos', { mode: 'ISTIO_MUTUAL' }, { 8080: { mode: 'DISABLE' } })],
      API_HTTP,
      { kind: 'plaintext' },
    ],
    [
      "a rule in the client's namespace beats one elsewhere",
      [destinationRule('istio-system', 'mesh', '*', { mode: 'ISTIO_MUTUAL' }), destinationRule('web', 'api', '*', { mode: 'DISABLE' })],
      API_HTTP,
      { kind: 'plaintext' },
    ],
    [
      'ISTIO_MUTUAL with its own subjectAltNames and sni',
      [destinationRule('web', 'api', '/prod/payments/api', { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/prod/sa/other'], sni: 'api.example' })],
      API_HTTP,
      { ...ISTIO, sans: ['URI:spiffe://cluster.local/ns/prod/sa/other'], sni: 'api.example' },
    ],
    [
      'SIMPLE with a CA file and a DNS SAN',
      [destinationRule('web', 'api', '/prod/payments/api', { mode: 'SIMPLE', caCertificates: '/etc/db/ca.pem', subjectAltNames: ['db.example.com'] })],
      API_HTTP,
      { kind: 'no-client-certificate', sans: ['DNS:db.example.com'], sni: 'api-payments-prod.marathon.mesos', alpn: undefined, trustedCa: '/etc/db/ca.pem' },
    ],
    [
      'MUTUAL with files',
      [destinationRule('web', 'api', '/prod/payments/api', { mode: 'MUTUAL', clientCertificate: '/etc/db/c.pem', privateKey: '/etc/db/k.pem', caCertificates: '/etc/db/ca.pem', sni: 'db' })],
      API_HTTP,
      { kind: 'certificate-files', sans: [], sni: 'db', alpn: undefined, trustedCa: '/etc/db/ca.pem', cert: '/etc/db/c.pem' },
    ],
    [
      'SIMPLE without caCertificates checks the mesh root',
      [destinationRule('web', 'api', '/prod/payments/api', { mode: 'SIMPLE' })],
      API_HTTP,
      { kind: 'no-client-certificate', sans: [], sni: 'api-payments-prod.marathon.mesos', alpn: undefined },
    ],
    ['the grpc port offers h2 beside istio', [], 'outbound|9090||api-payments-prod.marathon.mesos', { ...ISTIO, sni: 'outbound_.9090_._.api-payments-prod.marathon.mesos', alpn: ['istio', 'h2'] }],
  ];
  for (const [what, policies, cluster, expected] of rows) {
    it(what, () => assert.deepEqual(tlsTo(policies, cluster), expected));
  }

  it('SIMPLE without caCertificates validates against ROOTCA over SDS', () => {
    const r = generateEnvoy(inputsOf(mesh, [destinationRule('web', 'api', '/prod/payments/api', { mode: 'SIMPLE' })]), proxyOf(web));
    const common = named(r.clusters, API_HTTP).transport_socket.typed_config.common_tls_context;
    assert.deepEqual(common, { validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: SDS_CONFIG } });
  });

  it('listeners on 127.0.0.1:<local port>, RDS for HTTP, tcp_proxy for TCP, EDS clusters, every resource strictly valid', () => {
    const r = generateEnvoy(inputsOf(mesh, [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]), proxyOf(web));
    assertAllStrict(r);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(
      r.listeners.map((l) => l.name),
      ['inbound|10.0.0.5|8080', 'outbound|127.0.0.1|15080', 'outbound|127.0.0.1|15090', 'outbound|127.0.0.1|15100', 'outbound|127.0.0.1|15432'],
    );
    assert.ok(r.listeners.every((l) => l.json.api_listener === undefined), 'Envoy sidecars get no api_listeners');
    const http = named(r.listeners, 'outbound|127.0.0.1|15080');
    assert.deepEqual(http.address, { socket_address: { address: '127.0.0.1', port_value: 15080 } });
    assert.equal(http.filter_chains[0].filters[0].typed_config.rds.route_config_name, 'outbound|15080');
    assert.equal(named(r.routes, 'outbound|15080').virtual_hosts[0].routes[0].route.cluster, API_HTTP);
    assert.equal(named(r.routes, 'outbound|15090').virtual_hosts[0].routes[0].route.cluster, 'outbound|9090||api-payments-prod.marathon.mesos');
    assert.equal(named(r.listeners, 'outbound|127.0.0.1|15432').filter_chains[0].filters[0].typed_config.cluster, 'outbound|5432||api-payments-prod.marathon.mesos');
    const cluster = named(r.clusters, API_HTTP);
    assert.equal(cluster.type, 'EDS');
    assert.deepEqual(cluster.eds_cluster_config, { eds_config: { ads: {}, resource_api_version: 'V3' } });
    assert.deepEqual(
      r.endpoints.map((e) => e.name),
      ['outbound|5432||api-payments-prod.marathon.mesos', API_HTTP, 'outbound|8080||report-legacy.marathon.mesos', 'outbound|9090||api-payments-prod.marathon.mesos'],
    );
  });

  it('every sds_config in every resource is byte-identical (one SDS stream per secret)', () => {
    const r = generateEnvoy(inputsOf(mesh, [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]), proxyOf(web, { capture: 'redirect' }));
    const configs = new Set<string>();
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (typeof v === 'object' && v !== null) {
        for (const [k, x] of Object.entries(v)) k === 'sds_config' ? configs.add(JSON.stringify(x)) : walk(x);
      }
    };
    walk(r);
    assert.deepEqual([...configs], [JSON.stringify({ api_config_source: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc', retry_policy: { retry_back_off: { base_interval: '0.05s', max_interval: '0.2s' } } } }], set_node_on_first_message_only: true }, initial_fetch_timeout: '0s', resource_api_version: 'V3' })]);
  });
});

describe('Envoy endpoints and upstreams', () => {
  it('a ClusterLoadAssignment lists the healthy endpoints at the port of that index, sorted, once each', () => {
    const s = service({
      marathonId: '/prod/db',
      ports: [{ port: 5432, protocol: 'tcp' }, { name: 'http-admin', port: 8080, protocol: 'http' }],
      endpoints: [
        endpoint('10.0.1.9', [31002, 31003]),
        endpoint('10.0.1.3', [31000, 31001]),
        endpoint('10.0.1.4', [31004, 31005], false),
        endpoint('agent-7.example', [31006, 31007]),
        endpoint('10.0.1.3', [31000, 31001], true, 'duplicate-report'),
      ],
    });
    const client = service({ marathonId: '/prod/app', upstreams: [{ service: '/prod/db', localPort: 5432 }, { service: '/prod/db:http-admin', localPort: 18080 }] });
    const r = generateEnvoy(inputsOf(snapshotOf([s, client])), proxyOf(client));
    assertAllStrict(r);
    const hosts = (name: string) => named(r.endpoints, name).endpoints.flatMap((l: Obj) => l.lb_endpoints.map((e: Obj) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`));
    assert.deepEqual(hosts('outbound|5432||db-prod.marathon.mesos'), ['10.0.1.3:31000', '10.0.1.9:31002']);
    assert.deepEqual(hosts('outbound|8080||db-prod.marathon.mesos'), ['10.0.1.3:31001', '10.0.1.9:31003']);
    assert.deepEqual(named(r.endpoints, 'outbound|5432||db-prod.marathon.mesos').endpoints[0].locality, {});
    assert.deepEqual(r.warnings, [
      '/prod/db: endpoint task-agent-7.example-31006-31007 left out of outbound|5432||db-prod.marathon.mesos: address "agent-7.example" is not an IP address',
      '/prod/db: endpoint task-agent-7.example-31006-31007 left out of outbound|8080||db-prod.marathon.mesos: address "agent-7.example" is not an IP address',
    ]);
  });

  it('no healthy endpoint: an empty assignment, still a valid one', () => {
    const s = service({ marathonId: '/prod/db', endpoints: [endpoint('10.0.1.4', [31004], false)] });
    const client = service({ marathonId: '/prod/app', upstreams: [{ service: '/prod/db', localPort: 5432 }] });
    const r = generateEnvoy(inputsOf(snapshotOf([s, client])), proxyOf(client));
    assertAllStrict(r);
    assert.deepEqual(named(r.endpoints, 'outbound|8080||db-prod.marathon.mesos'), { cluster_name: 'outbound|8080||db-prod.marathon.mesos', endpoints: [] });
  });

  it('upstreams naming no service or no port are left out with a warning; the others are generated', () => {
    const client = service({
      marathonId: '/web/frontend',
      upstreams: [
        { service: '/prod/nothing', localPort: 15001 },
        { service: '/prod/payments/api:7777', localPort: 15002 },
        { service: '/prod/payments/api', localPort: 15003 },
        { service: '/legacy/report', localPort: 15003 },
      ],
    });
    const r = generateEnvoy(inputsOf(snapshotOf([api, legacy, client])), proxyOf(client));
    assertAllStrict(r);
    assert.deepEqual(r.listeners.map((l) => l.name), ['inbound|10.0.0.5|8080', 'outbound|127.0.0.1|15003']);
    assert.deepEqual(r.clusters.map((c) => c.name), ['inbound|8080||', API_HTTP]);
    assert.deepEqual(r.warnings, [
      'sidecar~10.0.0.5~web_frontend.1: upstream "/prod/nothing" (local port 15001) names no service in the mesh (a Marathon id or Mesos-DNS name, optionally :<port>); left out',
      'sidecar~10.0.0.5~web_frontend.1: upstream "/prod/payments/api:7777" (local port 15002): /prod/payments/api has no port 7777; its ports: 8080 (http), 9090 (grpc), 5432 (tcp-db); left out',
      'sidecar~10.0.0.5~web_frontend.1: upstream "/legacy/report": local port 15003 is taken by an earlier upstream; left out',
    ]);
  });

  it('explicit capture with instance IP 127.0.0.1 (where the app listens) gets no inbound listeners, and a warning', () => {
    const r = generateEnvoy(inputsOf(mesh), proxyOf(web, { instanceIp: '127.0.0.1', id: 'sidecar~127.0.0.1~x' }));
    assertAllStrict(r);
    assert.deepEqual(r.listeners.map((l) => l.name).filter((n) => n.startsWith('inbound')), []);
    assert.ok(r.listeners.some((l) => l.name === 'outbound|127.0.0.1|15080'), 'outbound still generated');
    assert.deepEqual(r.warnings, ['sidecar~127.0.0.1~x: instance IP "127.0.0.1" is not the container\'s own IP address (MESOS_CONTAINER_IP unset?): no inbound listeners']);
  });

  it('a proxy whose service is not in the mesh gets nothing, and a warning', () => {
    const r = generateEnvoy(inputsOf(snapshotOf([api], 7)), proxyOf(web));
    assert.deepEqual([r.clusters, r.endpoints, r.listeners, r.routes], [[], [], [], []]);
    assert.deepEqual(r.warnings, ['sidecar~10.0.0.5~web_frontend.1: /web/frontend is not in the mesh (snapshot 7): no listeners until it is']);
  });
});

describe('Envoy redirect capture', () => {
  it('virtualInbound on 15006 with chains per port (original destination port), passthrough for the rest; virtualOutbound on 15001 by endpoint', () => {
    const r = generateEnvoy(inputsOf(mesh, [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]), proxyOf(web, { capture: 'redirect' }));
    assertAllStrict(r);
    const vin = named(r.listeners, 'virtualInbound');
    assert.deepEqual(vin.address, { socket_address: { address: '0.0.0.0', port_value: 15006 } });
    assert.deepEqual(vin.listener_filters.map((f: Obj) => f.name), ['envoy.filters.listener.original_dst']);
    assert.deepEqual(vin.filter_chains.map((c: Obj) => [c.name, c.filter_chain_match?.destination_port ?? null]), [['inbound|8080|mtls', 8080], ['inbound|passthrough|mtls', null]]);
    assert.equal(vin.filter_chains[1].filters[0].typed_config.cluster, 'InboundPassthroughClusterIpv4');
    assert.equal(r.listeners.find((l) => l.name.startsWith('inbound|')), undefined, 'no explicit inbound listeners');
    const vout = named(r.listeners, 'virtualOutbound');
    assert.deepEqual(vout.address, { socket_address: { address: '0.0.0.0', port_value: 15001 } });
    assert.deepEqual(vout.default_filter_chain.filters[0].typed_config.cluster, 'PassthroughCluster');
    const chains = Object.fromEntries(vout.filter_chains.map((c: Obj) => [c.name, c.filter_chain_match]));
    assert.deepEqual(chains[`${API_HTTP}|8080`], { destination_port: 8080, prefix_ranges: [{ address_prefix: '10.1.0.2', prefix_len: 32 }, { address_prefix: '10.1.0.3', prefix_len: 32 }] });
    assert.deepEqual(chains['outbound|8080||report-legacy.marathon.mesos|31000'], { destination_port: 31000, prefix_ranges: [{ address_prefix: '10.2.0.2', prefix_len: 32 }] });
    assert.equal(named(r.clusters, 'PassthroughCluster').type, 'ORIGINAL_DST');
    assert.deepEqual(named(r.clusters, 'InboundPassthroughClusterIpv4').upstream_bind_config, { source_address: { address: '127.0.0.6', port_value: 0 } });
    assert.ok(named(r.listeners, 'outbound|127.0.0.1|15080'), 'local upstream ports still work');
  });

  it('PERMISSIVE in virtualInbound: tls_inspector and a TLS and a plaintext chain per port', () => {
    const r = generateEnvoy(inputsOf(mesh), proxyOf(api, { capture: 'redirect' }));
    assertAllStrict(r);
    const vin = named(r.listeners, 'virtualInbound');
    assert.deepEqual(vin.listener_filters.map((f: Obj) => f.name), ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector']);
    const at9090 = vin.filter_chains.filter((c: Obj) => c.filter_chain_match.destination_port === 9090);
    assert.equal(modeOfChains(at9090, vin.listener_filters), 'PERMISSIVE');
  });
});

describe('Envoy determinism and memoization', () => {
  const policies = [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }), destinationRule('web', 'api', '/prod/payments/api', { mode: 'ISTIO_MUTUAL' })];

  it('the same inputs give the same bytes, whatever the order of services, endpoints and policies, memo or not', () => {
    const reversed = snapshotOf([web, legacy, { ...api, endpoints: [...api.endpoints].reverse() }]);
    const a = JSON.stringify(generateEnvoy(inputsOf(mesh, policies), proxyOf(web, { capture: 'redirect' })));
    const b = JSON.stringify(generateEnvoy(inputsOf(reversed, [...policies].reverse()), proxyOf(web, { capture: 'redirect' })));
    assert.equal(a, b);
    const g = new EnvoyGenerator();
    g.generate(inputsOf(mesh, policies), proxyOf(api));
    assert.equal(JSON.stringify(g.generate(inputsOf(mesh, policies), proxyOf(web, { capture: 'redirect' }))), a);
  });

  it('proxies share one Cluster and one ClusterLoadAssignment object per service port; an unchanged proxy gets its previous result back', () => {
    const web2 = { ...web, marathonId: '/web/frontend2', dnsName: 'frontend2-web.marathon.mesos' };
    const snapshot = snapshotOf([api, legacy, web, web2]);
    const inputs = inputsOf(snapshot, policies);
    const g = new EnvoyGenerator();
    const a = g.generate(inputs, proxyOf(web));
    const b = g.generate(inputs, proxyOf(web2));
    assert.equal(a.clusters.find((c) => c.name === API_HTTP), b.clusters.find((c) => c.name === API_HTTP), 'the same Cluster object');
    assert.equal(a.endpoints.find((c) => c.name === API_HTTP), b.endpoints.find((c) => c.name === API_HTTP), 'the same ClusterLoadAssignment object');
    assert.equal(a.routes.find((c) => c.name === 'outbound|15080'), b.routes.find((c) => c.name === 'outbound|15080'));
    const before = g.stats;
    assert.deepEqual([before.clusterBuilds, before.endpointBuilds], [4, 4]);
    assert.equal(g.generate(inputs, proxyOf(web)), a, 'nothing changed: the same result object');
    assert.equal(g.stats.proxyReuses, 1);
    assert.equal(g.generate({ ...inputs }, proxyOf(web)), a, 'a new inputs object with the same snapshot and policies is the same inputs');
  });

  it('after one endpoint change only that service port is rebuilt; its Cluster survives, its ClusterLoadAssignment is new', () => {
    const g = new EnvoyGenerator();
    const a = g.generate(inputsOf(mesh, policies), proxyOf(web));
    const legacy2 = { ...legacy, endpoints: [endpoint('10.2.0.9', [31000])] };
    const next = snapshotOf([api, legacy2, web], 2);
    const builds = g.stats;
    const b = g.generate(inputsOf(next, policies), proxyOf(web));
    assert.notEqual(b, a);
    const legacyCla = 'outbound|8080||report-legacy.marathon.mesos';
    assert.notEqual(b.endpoints.find((e) => e.name === legacyCla), a.endpoints.find((e) => e.name === legacyCla));
    assert.equal(b.endpoints.find((e) => e.name === API_HTTP), a.endpoints.find((e) => e.name === API_HTTP), "the api's assignment is reused");
    for (const c of a.clusters) assert.equal(b.clusters.find((x) => x.name === c.name), c, `${c.name} reused`);
    assert.equal(g.stats.endpointBuilds - builds.endpointBuilds, 1);
    assert.equal(g.stats.clusterBuilds - builds.clusterBuilds, 0);
    // A new policy version: the decisions are made again, the equal clusters are still reused.
    const c = g.generate(inputsOf(next, [...policies]), proxyOf(web));
    assert.notEqual(c, b);
    assert.deepEqual(JSON.stringify(c), JSON.stringify(b));
  });
});
