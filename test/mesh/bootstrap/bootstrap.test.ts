import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { validateBootstrapConfig } from '@grpc/grpc-js-xds/build/src/xds-bootstrap';
import { writeBundleFiles } from '../../../src/cli/commands/cert';
import { envoyBootstrap, envoyBootstrapYaml, type EnvoyBootstrapOptions } from '../../../src/mesh/bootstrap/envoy';
import { grpcBootstrap } from '../../../src/mesh/bootstrap/grpc';
import { envoySdsFiles } from '../../../src/mesh/bootstrap/sds-files';
import { parseHostPort } from '../../../src/mesh/bootstrap/host-port';
import { proxyIdentityOf } from '../../../src/mesh/bootstrap/identity';
import type { JsonObject } from '../../../src/common/json';
import { toYaml } from '../../../src/mesh/bootstrap/yaml';
import { assertStrictEnvoyMessage, strictEnvoyProblems } from '../../helpers/envoy-proto';
import { bundleFor, cliPath, tempDir, testCa } from '../../helpers/pki';
import { envoyValidateArgs as envoyValidate, requireEnvoy } from '../../helpers/envoy';

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const identity = proxyIdentityOf('/prod/payments/api', 'cluster.local', { serviceAccount: 'payments' });
const base = { identity, marathonId: '/prod/payments/api' };
type Obj = Record<string, any>;
const clusterNamed = (b: JsonObject, name: string): Obj => ((b.static_resources as Obj).clusters as Obj[]).find((c) => c.name === name)!;

/** A certificate directory with real files, as the node agent writes it (files mode validates them). */
async function certsDir(): Promise<string> {
  const dir = path.join(tempDir(), 'certs');
  await writeBundleFiles(dir, bundleFor(testCa(), 'prod', 'payments'));
  return dir;
}

function citadel(...args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('Envoy bootstrap', () => {
  it('follows the sidecar contract in sds mode: node, admin, the two pipe clusters, ADS', () => {
    const b = envoyBootstrap({ ...base, certMode: 'sds', capture: 'explicit' }) as Obj;
    assert.equal(b.node.id, 'sidecar~127.0.0.1~prod_payments_api');
    assert.equal(b.node.cluster, '/prod/payments/api');
    assert.deepEqual(b.node.metadata, {
      CITADEL_MARATHON_ID: '/prod/payments/api', CITADEL_NAMESPACE: 'prod', CITADEL_SERVICE_ACCOUNT: 'payments',
      CITADEL_SPIFFE_ID: 'spiffe://cluster.local/ns/prod/sa/payments', CITADEL_TRUST_DOMAIN: 'cluster.local',
      CITADEL_CERT_MODE: 'sds', CITADEL_CAPTURE: 'explicit', CITADEL_GENERATOR: 'envoy',
    });
    assert.deepEqual(b.admin.address.socket_address, { address: '127.0.0.1', port_value: 15000 });
    const pipe = (c: Obj) => c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path;
    assert.equal(pipe(clusterNamed(b, 'sds-grpc')), '/var/run/secrets/workload-spiffe-uds/socket');
    assert.equal(pipe(clusterNamed(b, 'xds-grpc')), '/var/run/secrets/workload-spiffe-uds/xds');
    for (const name of ['sds-grpc', 'xds-grpc']) {
      const http2 = clusterNamed(b, name).typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
      assert.ok(http2.explicit_http_config.http2_protocol_options, `${name} speaks HTTP/2`);
    }
    assert.deepEqual(b.dynamic_resources, {
      ads_config: { api_type: 'GRPC', transport_api_version: 'V3', set_node_on_first_message_only: true, grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }] },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    });
  });

  it('sds mode with --socket-dir: both pipes in that directory (the agent’s <sds-dir>/<ns>/<sa>, where nothing mounts it)', () => {
    const b = envoyBootstrap({ ...base, certMode: 'sds', capture: 'explicit', socketDir: '/run/citadel/sds/prod/payments/' }) as Obj;
    const pipe = (c: Obj) => c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path;
    assert.equal(pipe(clusterNamed(b, 'sds-grpc')), '/run/citadel/sds/prod/payments/socket');
    assert.equal(pipe(clusterNamed(b, 'xds-grpc')), '/run/citadel/sds/prod/payments/xds');
  });

  it('in files mode dials the xDS address with the workload certificate and checks the DNS SAN istiod', () => {
    const b = envoyBootstrap({ ...base, certMode: 'files', capture: 'redirect' }) as Obj;
    assert.equal(clusterNamed(b, 'sds-grpc'), undefined, 'no SDS in files mode');
    const xds = clusterNamed(b, 'xds-grpc');
    assert.equal(xds.type, 'STRICT_DNS');
    assert.deepEqual(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: 'citadel.marathon.mesos', port_value: 15012 });
    const tls = xds.transport_socket.typed_config;
    assert.equal(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
    assert.equal(tls.sni, 'istiod');
    // The agent's Envoy SDS files beside the PEMs, re-read when the agent swaps ..data in the directory.
    const fileSource = (file: string) => ({ path_config_source: { path: `/etc/certs/${file}`, watched_directory: { path: '/etc/certs' } }, resource_api_version: 'V3' });
    assert.deepEqual(tls.common_tls_context.tls_certificate_sds_secret_configs, [{ name: 'default', sds_config: fileSource('envoy-sds-cert.json') }]);
    assert.deepEqual(tls.common_tls_context.combined_validation_context, {
      default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'istiod' } }] },
      validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: fileSource('envoy-sds-root.json') },
    });
    assert.equal(tls.common_tls_context.tls_certificates, undefined, 'no file read once at start');
    assert.equal(b.node.metadata.CITADEL_CERT_MODE, 'files');
    assert.equal(b.node.metadata.CITADEL_CAPTURE, 'redirect');
    assert.equal(clusterNamed(envoyBootstrap({ ...base, certMode: 'files', capture: 'explicit', xdsAddress: parseHostPort('10.0.0.5:15012', 'x') }), 'xds-grpc').type, 'STATIC');
    assert.equal(b.node.metadata.CITADEL_CERTS_DIR, undefined, '/etc/certs, the contract’s mount, goes without saying');
  });

  it('files mode with --certs-dir: the xDS cluster reads there, and node.metadata tells the xDS server so its TLS contexts do too', () => {
    const b = envoyBootstrap({ ...base, certMode: 'files', capture: 'explicit', certsDir: '/var/lib/citadel/certs/prod/payments/' }) as Obj;
    const common = clusterNamed(b, 'xds-grpc').transport_socket.typed_config.common_tls_context;
    assert.deepEqual(common.tls_certificate_sds_secret_configs[0].sds_config.path_config_source, {
      path: '/var/lib/citadel/certs/prod/payments/envoy-sds-cert.json',
      watched_directory: { path: '/var/lib/citadel/certs/prod/payments' },
    });
    assert.equal(common.combined_validation_context.validation_context_sds_secret_config.sds_config.path_config_source.path, '/var/lib/citadel/certs/prod/payments/envoy-sds-root.json');
    assert.equal(b.node.metadata.CITADEL_CERTS_DIR, '/var/lib/citadel/certs/prod/payments');
    assert.equal((envoyBootstrap({ ...base, certMode: 'sds', capture: 'explicit', certsDir: '/x' }) as Obj).node.metadata.CITADEL_CERTS_DIR, undefined, 'sds mode reads no files');
  });

  const variants: Array<[string, Omit<EnvoyBootstrapOptions, 'identity' | 'marathonId'>]> = [
    ['sds, explicit', { certMode: 'sds', capture: 'explicit' }],
    ['sds, redirect, admin 15900, instance ip/id', { certMode: 'sds', capture: 'redirect', adminPort: 15900, instanceIp: '10.1.2.3', instanceId: 'prod_payments_api.instance-1._app.1' }],
    ['files, explicit, xds by name', { certMode: 'files', capture: 'explicit' }],
    ['files, redirect, xds by IP', { certMode: 'files', capture: 'redirect', xdsAddress: parseHostPort('10.0.0.5:15012', 'x') }],
    ['files, xds by IPv6', { certMode: 'files', capture: 'explicit', xdsAddress: parseHostPort('[fd00::5]:15012', 'x') }],
  ];

  for (const [name, v] of variants) {
    it(`${name}: strictly valid against Envoy's protos`, () => {
      assertStrictEnvoyMessage(BOOTSTRAP, envoyBootstrap({ ...base, ...v }));
    });
  }

  it('every variant passes envoy --mode validate, as YAML and inline', async (t) => {
    if (!requireEnvoy(t)) return;
    const certs = await certsDir();
    const dir = tempDir();
    for (const [name, v] of variants) {
      const opts = { ...base, ...v, certsDir: certs };
      const file = path.join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(file, envoyBootstrapYaml(opts));
      const fromFile = envoyValidate(['-c', file]);
      assert.equal(fromFile.code, 0, `${name}: ${fromFile.output}`);
      assert.match(fromFile.output, /OK/);
      const inline = envoyValidate(['--config-yaml', JSON.stringify(envoyBootstrap(opts)), '--service-node', 'sidecar~10.0.0.9~task-1']);
      assert.equal(inline.code, 0, `${name} inline: ${inline.output}`);
    }
  });

  it('the Envoy SDS files beside the PEMs: one strict DiscoveryResponse per secret, named as the xds-grpc cluster asks, the PEMs inline', () => {
    const bundle = bundleFor(testCa(), 'prod', 'payments');
    const files = envoySdsFiles(bundle);
    assert.deepEqual(Object.keys(files).sort(), ['envoy-sds-cert.json', 'envoy-sds-root.json']);
    const cert = JSON.parse(files['envoy-sds-cert.json']);
    const root = JSON.parse(files['envoy-sds-root.json']);
    assertStrictEnvoyMessage('envoy.service.discovery.v3.DiscoveryResponse', cert);
    assertStrictEnvoyMessage('envoy.service.discovery.v3.DiscoveryResponse', root);
    assert.deepEqual(cert.resources, [{
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
      name: 'default',
      tls_certificate: { certificate_chain: { inline_string: bundle.certChainPem }, private_key: { inline_string: bundle.keyPem } },
    }]);
    assert.deepEqual(root.resources, [{ '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: bundle.rootCertPem } } }]);
    const common = clusterNamed(envoyBootstrap({ ...base, certMode: 'files', capture: 'explicit' }), 'xds-grpc').transport_socket.typed_config.common_tls_context;
    assert.equal(common.tls_certificate_sds_secret_configs[0].name, cert.resources[0].name);
    assert.equal(common.combined_validation_context.validation_context_sds_secret_config.name, root.resources[0].name);
  });

  it('envoy --mode validate refuses a files-mode bootstrap whose certificates are missing (the check can fail)', (t) => {
    if (!requireEnvoy(t)) return;
    const file = path.join(tempDir(), 'b.yaml');
    writeFileSync(file, envoyBootstrapYaml({ ...base, certMode: 'files', capture: 'explicit', certsDir: '/nonexistent/certs' }));
    const r = envoyValidate(['-c', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /nonexistent\/certs/);
  });
});

describe('the strict proto checker (test/helpers/envoy-proto.ts)', () => {
  it('names unknown fields, wrong types, deprecated fields and values, unloaded Any types, double oneofs', () => {
    const problems = strictEnvoyProblems(BOOTSTRAP, {
      node: { idd: 'x', cluster: 3 },
      admin: { access_log_path: '/dev/null' },
      static_resources: {
        clusters: [{
          name: 'c', connect_timeout: 1, type: 'STATIC', cluster_type: { name: 'x' },
          typed_extension_protocol_options: { x: { '@type': 'type.googleapis.com/no.such.Type' } },
          transport_socket: { name: 't', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', sni: 'x', bogus: 1 } },
        }],
      },
      dynamic_resources: { ads_config: { api_type: 'DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE' } },
    });
    const expect = [
      /\$\.node\.idd: no field "idd"/,
      /\$\.node\.cluster: expected string/,
      /\$\.admin\.access_log_path: deprecated/,
      /connect_timeout: expected a duration/,
      /cluster_type: oneof cluster_discovery_type is already set by "type"/,
      /no\.such\.Type is not loaded/,
      /typed_config\.bogus: no field "bogus" in envoy\.extensions\.transport_sockets\.tls\.v3\.UpstreamTlsContext/,
      /api_type: deprecated value/,
    ];
    for (const re of expect) assert.ok(problems.some((p) => re.test(p)), `expected ${re} among:\n${problems.join('\n')}`);
    assert.equal(problems.length, expect.length, problems.join('\n'));
  });

  it('checks TypedStruct values against the type they name', () => {
    const problems = strictEnvoyProblems('envoy.config.core.v3.TypedExtensionConfig', {
      name: 'x',
      typed_config: { '@type': 'type.googleapis.com/xds.type.v3.TypedStruct', type_url: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', value: { suppress_envoy_headers: 'yes' } },
    });
    assert.deepEqual(problems, ['$.typed_config.value.suppress_envoy_headers: expected bool, got "yes"']);
  });
});

describe('gRPC proxyless bootstrap', () => {
  const b = grpcBootstrap({ ...base, instanceIp: '10.1.2.3', instanceId: 'task-1' }) as Obj;

  it('follows the sidecar contract', () => {
    assert.deepEqual(b.xds_servers, [{ server_uri: 'unix:///var/run/secrets/workload-spiffe-uds/xds', channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }]);
    assert.equal(b.node.id, 'grpc~10.1.2.3~task-1');
    assert.equal(b.node.cluster, '/prod/payments/api');
    assert.deepEqual(b.node.locality, {});
    assert.equal(b.node.metadata.CITADEL_GENERATOR, 'grpc');
    assert.equal(b.node.metadata.CITADEL_SPIFFE_ID, 'spiffe://cluster.local/ns/prod/sa/payments');
    assert.deepEqual(b.certificate_providers.default, {
      plugin_name: 'file_watcher',
      config: { certificate_file: '/etc/certs/cert-chain.pem', private_key_file: '/etc/certs/key.pem', ca_certificate_file: '/etc/certs/root-cert.pem', refresh_interval: '10s' },
    });
    assert.equal(b.server_listener_resource_name_template, 'xds.istio.io/grpc/lds/inbound/%s');
  });

  it('--socket-dir moves the xds socket', () => {
    const moved = grpcBootstrap({ ...base, socketDir: '/run/citadel/sds/prod/payments' }) as Obj;
    assert.equal(moved.xds_servers[0].server_uri, 'unix:///run/citadel/sds/prod/payments/xds');
  });

  it("loads in grpc-js-xds's own bootstrap parser, which refuses a broken one", () => {
    const info = validateBootstrapConfig(JSON.parse(JSON.stringify(b)));
    assert.equal(info.xdsServers[0].server_uri, 'unix:///var/run/secrets/workload-spiffe-uds/xds');
    assert.equal(info.node.id, 'grpc~10.1.2.3~task-1');
    assert.equal(info.serverListenerResourceNameTemplate, 'xds.istio.io/grpc/lds/inbound/%s');
    assert.equal(info.certificateProviders.default.pluginName, 'file_watcher');
    assert.equal(info.node.metadata?.fields?.CITADEL_NAMESPACE?.stringValue, 'prod');
    const broken = JSON.parse(JSON.stringify(b));
    broken.certificate_providers.default.config.refresh_interval = 10;
    assert.throws(() => validateBootstrapConfig(broken), /refresh_interval/);
  });
});

describe('YAML text', () => {
  it('quotes every string, so nothing changes type, and nests lists of mappings', () => {
    const yaml = toYaml({ a: 'true', 'b c': [1, { x: null, y: [] }, ['n']], '@type': 'x', empty: {}, on: false, s: 'line\n"q"' });
    assert.equal(yaml, [
      'a: "true"',
      '"b c":',
      '  - 1',
      '  - x: null',
      '    "y": []',
      '  -',
      '    - "n"',
      '"@type": "x"',
      'empty: {}',
      '"on": false',
      's: "line\\n\\"q\\""',
      '',
    ].join('\n'));
  });
});

describe('citadel envoy-bootstrap / grpc-bootstrap', () => {
  it('prints YAML that Envoy accepts, and writes -o files', (t) => {
    if (!requireEnvoy(t)) return;
    const r = citadel('envoy-bootstrap', '--service', '/prod/payments/api', '--service-account', 'payments', '--admin-port', '15901');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^node:\n {2}id: "sidecar~127\.0\.0\.1~prod_payments_api"/);
    assert.match(r.out, /port_value: 15901/);
    const file = path.join(tempDir(), 'bootstrap.yaml');
    writeFileSync(file, r.out);
    assert.equal(envoyValidate(['-c', file]).code, 0);
    const out = path.join(tempDir(), 'files.yaml');
    const files = citadel('envoy-bootstrap', '--service', 'prod/api', '--mode', 'files', '--xds-address', '10.0.0.5:15012', '-o', out);
    assert.equal(files.code, 0, files.err);
    assert.equal(files.out, '');
    assert.match(readFileSync(out, 'utf8'), /address: "10\.0\.0\.5"\n\s+port_value: 15012/);
  });

  it('grpc-bootstrap prints JSON grpc-js-xds accepts', () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'c'));
    const r = citadel('grpc-bootstrap', '--service', '/prod/api', '--namespace', 'shop', '--certs-dir', '/certs', '--instance-ip', '10.0.0.7');
    assert.equal(r.code, 0, r.err);
    const info = validateBootstrapConfig(JSON.parse(r.out));
    assert.equal(info.node.id, 'grpc~10.0.0.7~prod_api');
    assert.equal(info.node.metadata?.fields?.CITADEL_NAMESPACE?.stringValue, 'shop');
    assert.equal(info.certificateProviders.default.config.certificateFile, '/certs/cert-chain.pem');
  });

  it('bad input: one line on stderr, exit 2', () => {
    const cases: Array<[string[], RegExp]> = [
      [['envoy-bootstrap', '--service', '/Prod/api'], /^citadel: --service: Marathon id "\/Prod\/api": segment "Prod"/],
      [['envoy-bootstrap', '--service', '/prod/api', '--service-account', 'A_B'], /^citadel: --service-account: service account "A_B"/],
      [['envoy-bootstrap', '--service', '/prod/api', '--xds-address', 'nohost'], /^citadel: --xds-address: "nohost" is not host:port/],
      [['envoy-bootstrap', '--service', '/prod/api', '--admin-port', '70000'], /^citadel: --admin-port: "70000" is not a port/],
      [['envoy-bootstrap', '--service', '/prod/api', '--mode', 'disk'], /^citadel: option '--mode <mode>' argument 'disk' is invalid/],
      [['envoy-bootstrap', '--service', '/prod/api', '--socket-dir', 'run/sds'], /^citadel: --socket-dir: "run\/sds" must be an absolute path/],
      [['grpc-bootstrap', '--service', '/prod/api', '--socket-dir', 'sds'], /^citadel: --socket-dir: "sds" must be an absolute path/],
      [['grpc-bootstrap', '--service', '/prod/api', '--instance-id', 'a~b'], /^citadel: --instance-id: "a~b" may hold only/],
      [['grpc-bootstrap', '--service', '/prod/api', '--refresh-interval', '10'], /^citadel: --refresh-interval: "10" is not a duration/],
    ];
    for (const [args, re] of cases) {
      const r = citadel(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, re);
      assert.equal(r.out, '');
      assert.equal(r.err.trim().split('\n').filter((l) => !l.startsWith('(run with --help')).length, 1, r.err);
    }
  });
});
