import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { register } from '@grpc/grpc-js-xds';
import { validateBootstrapConfig } from '@grpc/grpc-js-xds/build/src/xds-bootstrap';
import { ClusterResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/cluster-resource-type';
import { EndpointResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/endpoint-resource-type';
import { ListenerResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/listener-resource-type';
import type { XdsDecodeContext, XdsResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/xds-resource-type';
import { grpcBootstrap } from '../../../src/mesh/bootstrap/grpc';
import { MeshGenerator } from '../../../src/mesh/generator';
import { GrpcGenerator, generateGrpc, grpcClientListenerNames, grpcDefaultNames, parseGrpcListenerName } from '../../../src/mesh/grpc';
import type { PolicyDocument } from '../../../src/mesh/policy';
import { TYPE_URL, type GeneratedResources, type XdsResource } from '../../../src/mesh/resources';
import { encodeEnvoyMessage, assertStrictEnvoyMessage } from '../../helpers/envoy-proto';
import { destinationRule, peerAuthentication } from '../policy/fixtures';
import { endpoint, inputsOf, proxyOf, service, snapshotOf } from '../mesh-fixtures';

type Obj = Record<string, any>;

/** grpc-js-xds 1.14 reads only the deprecated matcher, so it is there on purpose. */
const ALLOW = { allowDeprecated: ['envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext.match_subject_alt_names'] };
const MESSAGE: Record<string, string> = {
  [TYPE_URL.cluster]: 'envoy.config.cluster.v3.Cluster',
  [TYPE_URL.endpoint]: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  [TYPE_URL.listener]: 'envoy.config.listener.v3.Listener',
};

register(); // the router and other HTTP filters grpc-js-xds validates HCMs against
const echo = service({
  marathonId: '/prod/echo',
  serviceAccount: 'echo',
  labels: { app: 'echo' },
  ports: [{ name: 'grpc', port: 7070, protocol: 'grpc' }, { name: 'grpc-admin', port: 7071, protocol: 'grpc' }],
  endpoints: [endpoint('10.1.0.2', [7070, 7071]), endpoint('10.1.0.3', [7070, 7071], false)],
  hasSidecar: false,
});
const caller = service({ marathonId: '/web/caller', upstreams: [{ service: '/prod/echo', localPort: 1 }] });
const mesh = snapshotOf([echo, caller]);

/** What grpc-js-xds itself makes of a resource: the client's own decode and validation, with a bootstrap as citadel writes it. */
const context: XdsDecodeContext = (() => {
  const bootstrap = validateBootstrapConfig(
    JSON.parse(JSON.stringify(grpcBootstrap({ identity: proxyOf(caller).identity, marathonId: caller.marathonId }))),
  );
  return { bootstrap, server: bootstrap.xdsServers[0] };
})();
function grpcDecode(r: XdsResource): Obj {
  const type: XdsResourceType = r.typeUrl === TYPE_URL.cluster ? ClusterResourceType.get() : r.typeUrl === TYPE_URL.endpoint ? EndpointResourceType.get() : ListenerResourceType.get();
  const decoded = type.decode(context, { type_url: r.typeUrl, value: Buffer.from(encodeEnvoyMessage(MESSAGE[r.typeUrl], r.json)) });
  assert.equal(decoded.error, undefined, `grpc-js-xds refuses ${r.name}: ${decoded.error}`);
  assert.equal(decoded.name, r.name);
  return decoded.value as Obj;
}
function assertAccepted(r: GeneratedResources): void {
  for (const res of [...r.clusters, ...r.endpoints, ...r.listeners]) {
    assertStrictEnvoyMessage(MESSAGE[res.typeUrl], res.json, ALLOW);
    grpcDecode(res);
  }
  assert.deepEqual(r.routes, [], 'gRPC routes are inline');
}
const named = (list: readonly XdsResource[], name: string): XdsResource => {
  const r = list.find((x) => x.name === name);
  assert.ok(r, `no ${name} among ${list.map((x) => x.name).join(', ')}`);
  return r;
};

const CLUSTER = 'outbound|7070||echo-prod.marathon.mesos';
const grpcNode = (s = caller, o = {}) => proxyOf(s, { generator: 'grpc', certMode: 'files', ...o });

describe('proxyless gRPC: names', () => {
  it('a client may dial xds:///<dnsName>:<port> or xds:///<Marathon id without the slash>:<port>', () => {
    assert.deepEqual(grpcClientListenerNames(echo, 7070), ['echo-prod.marathon.mesos:7070', 'prod/echo:7070']);
    assert.deepEqual(parseGrpcListenerName('prod/echo:7070'), { kind: 'client', host: 'prod/echo', port: 7070 });
    assert.deepEqual(parseGrpcListenerName('xds.istio.io/grpc/lds/inbound/10.0.0.5:7070'), { kind: 'server', ip: '10.0.0.5', port: 7070 });
    assert.deepEqual(parseGrpcListenerName('xds.istio.io/grpc/lds/inbound/[::]:7070'), { kind: 'server', ip: '::', port: 7070 });
    assert.equal(parseGrpcListenerName('xds.istio.io/grpc/lds/inbound/host:7070'), undefined);
    assert.equal(parseGrpcListenerName('echo-prod.marathon.mesos'), undefined, 'the port is required');
  });

  it('both target names give a Listener routing to outbound|<port>||<dnsName>; unknown names are not answered, with the reason', () => {
    const names = ['echo-prod.marathon.mesos:7070', 'prod/echo:7071', 'echo-prod.marathon.mesos:9999', 'nothing.marathon.mesos:1', 'echo-prod.marathon.mesos'];
    const r = generateGrpc(inputsOf(mesh), grpcNode(), { listeners: names, clusters: [CLUSTER, 'outbound|7070||prod/echo', 'bogus'], endpoints: [CLUSTER] });
    assertAccepted(r);
    assert.deepEqual(r.listeners.map((l) => l.name), ['echo-prod.marathon.mesos:7070', 'prod/echo:7071']);
    const route = (name: string) => (named(r.listeners, name).json as Obj).api_listener.api_listener.route_config.virtual_hosts[0].routes[0].route.cluster;
    assert.equal(route('echo-prod.marathon.mesos:7070'), CLUSTER);
    assert.equal(route('prod/echo:7071'), 'outbound|7071||echo-prod.marathon.mesos');
    assert.deepEqual(r.clusters.map((c) => c.name), [CLUSTER]);
    const id = 'grpc~10.0.0.5~web_caller.1';
    assert.deepEqual(r.warnings, [
      `${id}: Listener "echo-prod.marathon.mesos:9999" not answered: /prod/echo declares no port 9999`,
      `${id}: Listener "nothing.marathon.mesos:1" not answered: no service is named "nothing.marathon.mesos" (a Mesos-DNS name, or a Marathon id without its leading slash)`,
      `${id}: Listener "echo-prod.marathon.mesos" not answered: neither <service>:<port> nor the server template with <ip>:<port>`,
      `${id}: Cluster "outbound|7070||prod/echo" not answered: not an outbound|<port>||<dnsName> of a service port in the mesh`,
      `${id}: Cluster "bogus" not answered: not an outbound|<port>||<dnsName> of a service port in the mesh`,
    ]);
  });

  it('without names: the server Listeners of its own ports and its upstreams', () => {
    const n = grpcDefaultNames(inputsOf(mesh), grpcNode());
    assert.deepEqual(n, { listeners: ['xds.istio.io/grpc/lds/inbound/10.0.0.5:8080', 'echo-prod.marathon.mesos:7070'], clusters: [CLUSTER], endpoints: [CLUSTER] });
  });
});

describe('proxyless gRPC: clients', () => {
  const clusterTls = (policies: PolicyDocument[], s = echo) => {
    const r = generateGrpc(inputsOf(snapshotOf([s, caller]), policies), grpcNode(), { clusters: [CLUSTER] });
    assertAccepted(r);
    return { json: r.clusters[0]?.json as Obj | undefined, decoded: r.clusters[0] && grpcDecode(r.clusters[0]), warnings: r.warnings };
  };

  it('ISTIO_MUTUAL: certificate providers, the SPIFFE ID in the matcher grpc-js reads (and the typed one beside it)', () => {
    const { json, decoded } = clusterTls([destinationRule('istio-system', 'echo', '/prod/echo', { mode: 'ISTIO_MUTUAL' })]);
    assert.deepEqual(json, {
      name: CLUSTER,
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
      lb_policy: 'ROUND_ROBIN',
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
          common_tls_context: {
            tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
            combined_validation_context: {
              default_validation_context: {
                ca_certificate_provider_instance: { instance_name: 'default', certificate_name: 'ROOTCA' },
                match_subject_alt_names: [{ exact: 'spiffe://cluster.local/ns/prod/sa/echo' }],
                match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/prod/sa/echo' } }],
              },
            },
          },
          sni: 'outbound_.7070_._.echo-prod.marathon.mesos',
        },
      },
    });
    const security = decoded!.securityUpdate;
    assert.equal(security.caCertificateProviderInstance, 'default');
    assert.equal(security.identityCertificateProviderInstance, 'default');
    assert.deepEqual(security.subjectAltNameMatchers.map((m: Obj) => m.exact), ['spiffe://cluster.local/ns/prod/sa/echo'], 'grpc-js checks the SPIFFE ID');
  });

  it('auto mTLS: mTLS to a destination with a sidecar, plaintext otherwise; never TLS to a sidecar that says DISABLE', () => {
    assert.equal(clusterTls([]).json!.transport_socket, undefined);
    assert.ok(clusterTls([], { ...echo, hasSidecar: true }).json!.transport_socket);
    const disable = peerAuthentication('prod', 'echo', { selector: { app: 'echo' }, mtls: 'DISABLE' });
    assert.equal(clusterTls([disable, destinationRule('web', 'echo', '*', { mode: 'ISTIO_MUTUAL' })], { ...echo, hasSidecar: true }).json!.transport_socket, undefined);
  });

  it('SIMPLE or MUTUAL with files is not answered: grpc-js has no files, and less security than asked is no answer', () => {
    const { json, warnings } = clusterTls([destinationRule('web', 'echo', '/prod/echo', { mode: 'SIMPLE', caCertificates: '/etc/ca.pem' })]);
    assert.equal(json, undefined);
    assert.deepEqual(warnings, [
      `grpc~10.0.0.5~web_caller.1: Cluster "${CLUSTER}" not answered: DestinationRule web/echo asks SIMPLE TLS with files for ${CLUSTER}, which proxyless gRPC cannot use (only ISTIO_MUTUAL or DISABLE)`,
    ]);
  });

  it('endpoints: healthy ones in one locality with a weight (grpc-js drops a locality without one)', () => {
    const r = generateGrpc(inputsOf(mesh), grpcNode(), { endpoints: [CLUSTER] });
    assertAccepted(r);
    assert.deepEqual(r.endpoints[0].json, {
      cluster_name: CLUSTER,
      endpoints: [{ locality: {}, load_balancing_weight: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.1.0.2', port_value: 7070 } } } }] }],
    });
    const decoded = grpcDecode(r.endpoints[0]);
    assert.deepEqual(decoded.endpoints.map((l: Obj) => l.load_balancing_weight), [{ value: 1 }], 'the weight survives the encoding');
  });
});

describe('proxyless gRPC: servers', () => {
  const serverListener = (policies: PolicyDocument[], address = '10.0.0.5:7070') => {
    const name = `xds.istio.io/grpc/lds/inbound/${address}`;
    const r = generateGrpc(inputsOf(mesh, policies), grpcNode(echo), { listeners: [name] });
    assertAccepted(r);
    return named(r.listeners, name).json as Obj;
  };
  const strict = peerAuthentication('istio-system', 'default', { mtls: 'STRICT' });

  it('STRICT: the bound address, non_forwarding_action, a client certificate from the mesh root required', () => {
    const l = serverListener([strict]);
    assert.deepEqual(l.address, { socket_address: { address: '10.0.0.5', port_value: 7070 } });
    const [chain] = l.filter_chains;
    const hcm = chain.filters[0].typed_config;
    assert.equal(hcm.stat_prefix, 'inbound-mtls');
    assert.deepEqual(hcm.route_config.virtual_hosts[0].routes, [{ match: { prefix: '/' }, non_forwarding_action: {} }]);
    assert.deepEqual(chain.transport_socket.typed_config, {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      common_tls_context: {
        tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
        validation_context: { ca_certificate_provider_instance: { instance_name: 'default', certificate_name: 'ROOTCA' } },
      },
      require_client_certificate: true,
    });
    assert.equal(l.listener_filters, undefined, 'grpc-js NACKs listener_filters');
  });

  it('PERMISSIVE and DISABLE are plaintext, with another stat_prefix than mTLS (the grpc-js-xds 1.14 mode-switch bug)', () => {
    for (const policies of [[], [peerAuthentication('prod', 'echo', { selector: { app: 'echo' }, mtls: 'DISABLE' })]]) {
      const [chain] = serverListener(policies).filter_chains;
      assert.equal(chain.transport_socket, undefined);
      assert.equal(chain.filters[0].typed_config.stat_prefix, 'inbound-plaintext');
    }
  });

  it('port-level policy decides per port; a wildcard or IPv6 bind address is kept as asked', () => {
    const policies = [strict, peerAuthentication('prod', 'echo', { selector: { app: 'echo' }, mtls: 'UNSET', ports: { 7071: 'PERMISSIVE' } })];
    assert.ok(serverListener(policies, '10.0.0.5:7070').filter_chains[0].transport_socket);
    assert.equal(serverListener(policies, '10.0.0.5:7071').filter_chains[0].transport_socket, undefined);
    assert.deepEqual(serverListener(policies, '0.0.0.0:7070').address, { socket_address: { address: '0.0.0.0', port_value: 7070 } });
    assert.deepEqual(serverListener(policies, '[::]:7070').address, { socket_address: { address: '::', port_value: 7070 } });
  });
});

describe('proxyless gRPC: determinism and memoization', () => {
  it('an unchanged node gets its previous result; the MeshGenerator shares endpoints between Envoy and gRPC nodes', () => {
    const g = new GrpcGenerator();
    const inputs = inputsOf(mesh);
    const names = { listeners: ['echo-prod.marathon.mesos:7070'], clusters: [CLUSTER], endpoints: [CLUSTER] };
    const a = g.generate(inputs, grpcNode(), names);
    assert.equal(g.generate(inputs, grpcNode(), { ...names }), a);
    assert.equal(g.stats.proxyReuses, 1);
    assert.notEqual(g.generate(inputs, grpcNode(), { ...names, clusters: [] }), a, 'other names, another answer');
    assert.notEqual(g.generate(inputsOf(mesh), grpcNode(), names), a, 'another policy version (a new array), built again');
    assert.equal(JSON.stringify(generateGrpc(inputs, grpcNode(), names)), JSON.stringify(a));

    const both = new MeshGenerator();
    const envoyCaller = { ...caller, upstreams: [{ service: '/prod/echo', localPort: 17070 }] };
    const snapshot = snapshotOf([echo, envoyCaller]);
    const fromEnvoy = both.generate(inputsOf(snapshot), proxyOf(envoyCaller));
    const fromGrpc = both.generate(inputsOf(snapshot), grpcNode(envoyCaller), names);
    assert.equal(named(fromEnvoy.endpoints, CLUSTER), named(fromGrpc.endpoints, CLUSTER));
    assert.throws(() => both.envoy.generate(inputsOf(snapshot), grpcNode(envoyCaller)), /is a grpc node; use GrpcGenerator/);
  });
});
