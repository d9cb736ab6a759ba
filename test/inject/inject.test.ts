import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, symlinkSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { injectConfig, type InjectConfig, type InjectConfigFile } from '../../src/inject/config';
import { inject } from '../../src/inject/injector';
import { formatReport } from '../../src/inject/report';
import { DEFAULT_TEMPLATE_FILE, parseSidecarTemplate } from '../../src/inject/template';
import { MarathonParseError } from '../../src/marathon/model';
import { MarathonSimulator } from '../../src/marathon/simulator';
import type { JsonObject, JsonValue } from '../../src/common/json';
import { assertStrictEnvoyMessage } from '../helpers/envoy-proto';
import { tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { requireEnvoy } from '../helpers/envoy';
import { onContainerNetwork, onHostNetwork, systemFixtures } from './fixtures';

type Obj = Record<string, any>;
const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const injectAll = (file: Partial<InjectConfigFile['defaults']> = {}, namespaces: InjectConfigFile['namespaces'] = {}) =>
  injectConfig({ file: { defaults: { inject: true, ...file }, namespaces } });
const bytes = (v: JsonValue) => JSON.stringify(v, null, 2) + '\n';
const sidecarOf = (pod: Obj): Obj => pod.containers.find((c: Obj) => c.name === 'istio-proxy');
/** The bootstrap passed inline in the sidecar's command. */
const bootstrapOf = (pod: Obj): Obj => JSON.parse(/--config-yaml '([^']*)'/.exec(sidecarOf(pod).exec.command.shell)![1]);

const podIn = (over: Obj = {}): JsonObject => ({
  id: '/prod/api',
  labels: { 'sidecar.istio.io/inject': 'true' },
  containers: [{ name: 'app', resources: { cpus: 0.5, mem: 64 }, image: { kind: 'DOCKER', id: 'nginx' }, endpoints: [{ name: 'http', containerPort: 8080, hostPort: 0 }] }],
  networks: [{ mode: 'container', name: 'dcos' }],
  ...over,
});

/** Marathon accepts it: the simulator's validation, and the naming rules for what injection adds. */
function assertMarathonAccepts(pod: Obj, generatedNames: 'all' | 'sidecar'): void {
  const sim = new MarathonSimulator();
  const created = sim.state.createPod(pod);
  assert.ok(sim.state.pods.has(created.id as string));
  const containers: Obj[] = generatedNames === 'all' ? pod.containers : [sidecarOf(pod)];
  for (const c of containers) {
    assert.match(c.name, NAME, `container name ${c.name}`);
    for (const e of c.endpoints ?? []) assert.match(e.name, NAME, `endpoint name ${e.name}`);
  }
  for (const v of pod.volumes ?? []) if (generatedNames === 'all' || v.name === 'citadel-identity') assert.match(v.name, NAME, `volume name ${v.name}`);
}

describe("Marathon's system apps and pods", () => {
  const config = injectAll();
  for (const f of systemFixtures()) {
    it(`${f.file}: ${onHostNetwork(f) ? 'skipped on the host network, injected on a container network' : 'injected'}; accepted by the simulator; injecting again changes no byte`, () => {
      if (onHostNetwork(f)) {
        const skipped = inject(f.json, config);
        assert.equal(skipped.reports[0].outcome, 'skipped');
        assert.match(skipped.reports[0].reason!, /^host networking/);
        assert.equal(bytes(skipped.definition), bytes(f.json), 'a skipped definition is left as it was');
      }
      const input = onHostNetwork(f) ? onContainerNetwork(f) : f.json;
      const first = inject(input, config);
      const [report] = first.reports;
      assert.equal(report.outcome, 'injected', report.reason);
      assert.equal(report.kind, f.kind);
      assert.equal(report.convertedFromApp, f.kind === 'app');
      const pod = first.definition as Obj;
      assert.ok(Array.isArray(pod.containers), 'the result is a pod');
      const sidecar = sidecarOf(pod);
      assert.equal(sidecar.image.id, 'docker.io/envoyproxy/envoy:v1.40.0');
      assert.deepEqual(sidecar.resources, { cpus: 0.1, mem: 128, disk: 0 });
      const status = JSON.parse(pod.labels['sidecar.istio.io/status']);
      assert.deepEqual(status, { version: config.template.sha256, containers: ['istio-proxy'], volumes: ['citadel-identity'] });
      assert.equal(pod.containers.filter((c: Obj) => c.name === 'istio-proxy').length, 1);
      if (f.kind === 'app') {
        assert.ok(pod.labels['citadel.io/converted-from-app'], 'the conversion is recorded');
        assert.equal(pod.containers.length, 2);
      } else {
        assert.deepEqual(pod.containers.slice(0, -1), (input as Obj).containers, "the pod's own containers are untouched");
      }
      assertMarathonAccepts(pod, f.kind === 'app' ? 'all' : 'sidecar');
      assertStrictEnvoyMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrapOf(pod));

      const second = inject(pod, config);
      assert.equal(bytes(second.definition), bytes(pod));
      assert.deepEqual(second.reports.map((r) => [r.outcome, r.reason]), [['skipped', 'already current']]);
    });
  }

  it('conversions carry what pods can hold and name the rest', () => {
    const byFile = new Map(systemFixtures().map((f) => [f.file, f]));
    const convert = (file: string) => {
      const f = byFile.get(file)!;
      const r = inject(onHostNetwork(f) ? onContainerNetwork(f) : f.json, config);
      return { pod: r.definition as Obj, report: r.reports[0] };
    };
    const docker = convert('system-apps/docker-http-server.json');
    assert.deepEqual(docker.pod.containers[0], {
      name: 'docker-http-server',
      resources: { cpus: 0.5, mem: 32, disk: 0 },
      image: { kind: 'DOCKER', id: 'python:3.5-alpine' },
      exec: { command: { shell: 'python3 -m http.server 8080' } },
      endpoints: [{ name: 'port0', containerPort: 8080, hostPort: 0, protocol: ['tcp'] }],
    });
    assert.deepEqual(docker.pod.networks, [{ mode: 'container/bridge' }]);
    assert.deepEqual(docker.pod.scaling, { kind: 'fixed', instances: 1 });
    assert.match(docker.report.changed.join('\n'), /\/container\/type: DOCKER; a pod runs the image with the Mesos containerizer/);

    const readiness = convert('system-apps/readiness-and-health-app.json');
    assert.deepEqual(readiness.pod.containers[0].healthCheck, {
      http: { endpoint: 'api', path: '/', scheme: 'HTTP' }, gracePeriodSeconds: 10, intervalSeconds: 2, maxConsecutiveFailures: 0, timeoutSeconds: 2,
    });
    assert.ok(readiness.report.notCarried.some((n) => n.startsWith('/readinessChecks (pods have no readiness checks)')));
    assert.deepEqual(readiness.pod.scheduling, { upgrade: { minimumHealthCapacity: 0, maximumOverCapacity: 0 } });

    const persistent = convert('system-apps/persistent-volume-app.json');
    assert.deepEqual(persistent.pod.volumes[0], { name: 'data', persistent: { size: 10, type: 'root', constraints: [] } });
    assert.deepEqual(persistent.pod.containers[0].volumeMounts, [{ name: 'data', mountPath: 'data', readOnly: false }]);
    assert.deepEqual(persistent.pod.scheduling.placement, { acceptedResourceRoles: ['*'] });

    const external = convert('system-apps/external-volume-mesos-app.json');
    assert.ok(external.report.notCarried.some((n) => n.startsWith('/container/volumes(0)/external (pods take no external volumes)')));
    assert.deepEqual(JSON.parse(external.pod.labels['citadel.io/converted-from-app']).notCarried, external.report.notCarried.map((n) => n.split(' ')[0]));

    const bridge = convert('system-apps/pinger-bridge-app.json');
    assert.deepEqual(bridge.pod.volumes[0], { name: 'opt-pinger-py', host: 'pinger.py' });
    assert.deepEqual(bridge.pod.containers[0].artifacts, [{ uri: 'http://master.mesos:7777/pinger.py' }]);
    assert.deepEqual(bridge.pod.environment, { PORT0: '80', PORT_HTTP: '80', PORTS: '80' });
    assert.ok(bridge.report.changed.some((c) => /hostPath: "pinger\.py" is now relative to the pod executor's sandbox/.test(c)));

    const ucr = convert('system-apps/private-ucr-docker-app.json');
    assert.deepEqual(ucr.pod.containers[0].image, { kind: 'DOCKER', id: 'mesosphere/simple-docker-ee:latest', forcePull: true, pullConfig: { secret: 'pullConfigSecret' } });
    assert.deepEqual(ucr.pod.secrets, { pullConfigSecret: { source: '/pullconfig' } });

    const legacyIp = convert('system-apps/pinger-container-app.json');
    assert.deepEqual(legacyIp.pod.networks, [{ mode: 'container', name: 'dcos' }]);
    assert.deepEqual(legacyIp.pod.containers[0].endpoints, [{ name: 'my-port', containerPort: 7777, protocol: ['tcp'] }]);
  });
});

describe('injection', () => {
  it('sds mode mounts <sds-dir>/<ns>/<sa> at /var/run/secrets/workload-spiffe-uds; files mode <certs-dir>/<ns>/<sa> at /etc/certs read-only', () => {
    const pod = podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': 'payments' } });
    const sds = inject(pod, injectAll({ sdsDir: '/srv/sds' })).definition as Obj;
    assert.deepEqual(sds.volumes, [{ name: 'citadel-identity', host: '/srv/sds/prod/payments' }]);
    assert.deepEqual(sidecarOf(sds).volumeMounts, [{ name: 'citadel-identity', mountPath: '/var/run/secrets/workload-spiffe-uds', readOnly: false }]);
    assert.equal(bootstrapOf(sds).node.metadata.CITADEL_CERT_MODE, 'sds');

    const files = inject(pod, injectAll({ certMode: 'files', certsDir: '/srv/certs' })).definition as Obj;
    assert.deepEqual(files.volumes, [{ name: 'citadel-identity', host: '/srv/certs/prod/payments' }]);
    assert.deepEqual(sidecarOf(files).volumeMounts, [{ name: 'citadel-identity', mountPath: '/etc/certs', readOnly: true }]);
    const xds = bootstrapOf(files).static_resources.clusters.find((c: Obj) => c.name === 'xds-grpc');
    // The xDS connection's certificate: the agent's Envoy SDS file in the mounted directory, watched for its swaps.
    assert.deepEqual(xds.transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.path_config_source, { path: '/etc/certs/envoy-sds-cert.json', watched_directory: { path: '/etc/certs' } });
    assertStrictEnvoyMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrapOf(files));
    assert.deepEqual(sidecarOf(files).environment, {
      CITADEL_MARATHON_ID: '/prod/api', CITADEL_SPIFFE_ID: 'spiffe://cluster.local/ns/prod/sa/payments', CITADEL_NAMESPACE: 'prod',
      CITADEL_SERVICE_ACCOUNT: 'payments', CITADEL_TRUST_DOMAIN: 'cluster.local', CITADEL_XDS_ADDRESS: 'citadel.marathon.mesos:15012',
      CITADEL_CERT_MODE: 'files', CITADEL_CAPTURE: 'explicit',
    });
  });

  it('explicit capture runs Envoy directly; redirect runs the embedded capture script as root with the pod\'s ports and the traffic labels', () => {
    const explicit = sidecarOf(inject(podIn(), injectAll()).definition as Obj);
    assert.equal(explicit.user, undefined);
    assert.match(explicit.exec.command.shell, /^INSTANCE_IP="\$\{INSTANCE_IP:-\$\{MESOS_CONTAINER_IP:-127\.0\.0\.1\}\}"; INSTANCE_ID="\$\{INSTANCE_ID:-\$\{MESOS_TASK_ID:-\$\(hostname\)\}\}"; exec envoy --config-yaml '\{/);
    assert.match(explicit.exec.command.shell, / --service-node "sidecar~\$\{INSTANCE_IP\}~\$\{INSTANCE_ID\}" --disable-hot-restart$/);

    const pod = podIn({
      labels: {
        'sidecar.istio.io/inject': 'true', 'citadel.io/capture': 'redirect',
        'traffic.sidecar.istio.io/excludeInboundPorts': '9090', 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8,172.16.0.0/12',
        'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.1.0.0/16', 'traffic.sidecar.istio.io/excludeOutboundPorts': '3306',
      },
    });
    (pod.containers as Obj[])[0].endpoints.push({ name: 'admin', containerPort: 9090 }, { name: 'grpc', containerPort: 9000 });
    const redirect = sidecarOf(inject(pod, injectAll()).definition as Obj);
    assert.equal(redirect.user, 'root');
    const script = readFileSync(path.join(path.dirname(DEFAULT_TEMPLATE_FILE), '..', 'capture', 'citadel-iptables.sh'), 'utf8');
    assert.ok(redirect.exec.command.shell.includes(`exec sh -c '${script.replace(/'/g, `'\\''`)}' citadel-iptables `), 'the shipped script, embedded');
    assert.ok(
      redirect.exec.command.shell.includes(
        ` citadel-iptables -p 15001 -z 15006 -u 1337 -g 1337 -b 8080,9000 -d 5051,8060,15012,15014,15000,9090 -i 10.0.0.0/8,172.16.0.0/12 -x 10.1.0.0/16 -o 5051,8060,15012,15014,15000,3306 -- envoy --config-yaml '`,
      ),
      redirect.exec.command.shell.slice(-900),
    );
    assert.equal(redirect.environment.CITADEL_CAPTURE, 'redirect');

    const all = podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'traffic.sidecar.istio.io/includeInboundPorts': '*' } });
    assert.match(sidecarOf(inject(all, injectAll({ capture: 'redirect' })).definition as Obj).exec.command.shell, / -b '\*' .* -i '\*' -x '' /);
  });

  it('sizes the sidecar from sidecar.istio.io/proxyCPU and proxyMemory (Marathon units or Istio quantities)', () => {
    const sized = (cpu: string, mem: string) =>
      sidecarOf(inject(podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'sidecar.istio.io/proxyCPU': cpu, 'sidecar.istio.io/proxyMemory': mem } }), injectAll()).definition as Obj).resources;
    assert.deepEqual(sized('200m', '256Mi'), { cpus: 0.2, mem: 256, disk: 0 });
    assert.deepEqual(sized('0.5', '1Gi'), { cpus: 0.5, mem: 1024, disk: 0 });
    assert.deepEqual(sized('1', '64'), { cpus: 1, mem: 64, disk: 0 });
  });

  it('opt-in and opt-out: the label, else the namespace default of the inject config (default: only with the label)', () => {
    const unlabelled = (id: string) => podIn({ id, labels: {} });
    const reasons = (def: JsonValue, config: InjectConfig) => inject(def, config).reports.map((r) => `${r.outcome} ${r.id}${r.reason ? `: ${r.reason}` : ''}`);
    const defaults = injectConfig();
    assert.deepEqual(reasons([unlabelled('/prod/a'), podIn({ id: '/prod/b' })], defaults), [
      'skipped /prod/a: not opted in (namespace prod injects only with sidecar.istio.io/inject: "true")',
      'injected /prod/b',
    ]);
    const perNamespace = injectConfig({ file: { defaults: {}, namespaces: { prod: { inject: true } } } });
    const optOut = podIn({ id: '/prod/c', labels: { 'sidecar.istio.io/inject': 'false' } });
    assert.deepEqual(reasons([unlabelled('/prod/a'), unlabelled('/dev/a'), optOut], perNamespace), [
      'injected /prod/a',
      'skipped /dev/a: not opted in (namespace dev injects only with sidecar.istio.io/inject: "true")',
      'skipped /prod/c: opt-out (sidecar.istio.io/inject: "false")',
    ]);
    const result = inject(optOut, perNamespace);
    assert.equal(bytes(result.definition), bytes(optOut));
    // an injected pod later opted out keeps its sidecar, and the report says so
    const injected = inject(podIn(), defaults).definition as Obj;
    injected.labels['sidecar.istio.io/inject'] = 'false';
    assert.match(inject(injected, defaults).reports[0].reason!, /^opt-out .*; it keeps the sidecar of an earlier injection$/);
  });

  it('skips host networking, written or by default, with the reason', () => {
    for (const networks of [[{ mode: 'host' }], undefined]) {
      const pod = podIn({ networks });
      if (networks === undefined) delete pod.networks;
      const r = inject(pod, injectAll());
      assert.equal(formatReport(r.reports[0]), 'skipped /prod/api: host networking (capture would change the host; move it onto a container network)');
      assert.equal(bytes(r.definition), bytes(pod));
    }
    const app = { id: '/prod/web', cmd: 'serve', labels: { 'sidecar.istio.io/inject': 'true' } };
    const r = inject(app, injectAll());
    assert.match(formatReport(r.reports[0]), /^skipped \/prod\/web: host networking/);
    assert.deepEqual(r.definition, app, 'a skipped app stays an app');
  });

  it('re-injection replaces what the status lists: a changed template or setting upgrades, the old one restores the same bytes', () => {
    const v1 = injectAll();
    const once = inject(podIn(), v1).definition as Obj;
    const text = readFileSync(DEFAULT_TEMPLATE_FILE, 'utf8');
    const renamed = parseSidecarTemplate(
      text.replace('"name": "istio-proxy"', '"name": "envoy"').replace('"CITADEL_CAPTURE": "{{capture}}"', '"CITADEL_CAPTURE": "{{capture}}", "EXTRA": "admin={{adminPort}}"'),
      'v2.json',
    );
    const v2 = injectConfig({ file: { defaults: { inject: true }, namespaces: {} }, template: renamed });
    const upgraded = inject(once, v2);
    assert.equal(formatReport(upgraded.reports[0]), 'injected /prod/api (pod, sidecar replaced)');
    const pod = upgraded.definition as Obj;
    assert.deepEqual(pod.containers.map((c: Obj) => c.name), ['app', 'envoy'], 'the old sidecar is gone, the new one added');
    assert.equal(pod.containers[1].environment.EXTRA, 'admin=15000', 'a placeholder inside a string becomes text');
    assert.equal(JSON.parse(pod.labels['sidecar.istio.io/status']).version, renamed.sha256);
    assert.notEqual(renamed.sha256, v1.template.sha256);
    assert.equal(bytes(inject(pod, v1).definition), bytes(once), 'back to the first template: the first bytes');

    const newImage = inject(once, injectAll({ image: 'registry.local/envoy-iptables:1.40' }));
    assert.equal(newImage.reports[0].upgraded, true);
    assert.equal(sidecarOf(newImage.definition as Obj).image.id, 'registry.local/envoy-iptables:1.40');

    const cosmetic = parseSidecarTemplate(text.replace(/\n\s*/g, ' '), 'same.json');
    assert.equal(cosmetic.sha256, v1.template.sha256, 'the hash is of the JSON, not its layout');
  });

  it('a group: every member, recursively; converted apps join the pods; ids resolve against the group', () => {
    const group: Obj = {
      id: '/shop',
      apps: [
        { id: 'web', cmd: 'serve', labels: { 'sidecar.istio.io/inject': 'true' }, networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS', portMappings: [{ containerPort: 80, name: 'http' }] } },
        { id: 'batch', cmd: 'run', labels: { 'sidecar.istio.io/inject': 'true' } },
      ],
      pods: [podIn({ id: 'cart' })],
      groups: [{ id: 'backend', apps: [{ id: 'db', cmd: 'postgres', labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': 'db' }, networks: [{ mode: 'container/bridge' }] }] }],
    };
    const r = inject(group, injectConfig());
    assert.deepEqual(r.reports.map(formatReport).map((l) => l.split('\n')[0]), [
      'injected /shop/web (pod, converted from app)',
      'skipped /shop/batch: host networking (capture would change the host; move it onto a container network)',
      'injected /shop/cart (pod)',
      'injected /shop/backend/db (pod, converted from app)',
    ]);
    const out = r.definition as Obj;
    assert.deepEqual(out.apps.map((a: Obj) => a.id), ['batch']);
    assert.deepEqual(out.pods.map((p: Obj) => p.id), ['cart', 'web']);
    assert.deepEqual(out.groups[0].apps, []);
    assert.deepEqual(out.groups[0].pods.map((p: Obj) => p.id), ['db']);
    const db = out.groups[0].pods[0];
    assert.equal(sidecarOf(db).environment.CITADEL_SPIFFE_ID, 'spiffe://cluster.local/ns/shop/sa/db');
    assert.equal(bootstrapOf(db).node.cluster, '/shop/backend/db');
    const sim = new MarathonSimulator();
    sim.state.updateGroup('/shop', out, { create: true });
    assert.ok(sidecarOf(sim.state.pods.get('/shop/backend/db')!.def));
    assert.ok(sim.state.apps.has('/shop/batch'));
    assert.equal(bytes(inject(out, injectConfig()).definition), bytes(out), 'a group injects idempotently too');
  });

  it('broken definitions: one error naming the JSON path; nothing is returned', () => {
    const cases: Array<[JsonValue, RegExp]> = [
      [podIn({ containers: [{ name: 3, resources: {} }] }), /^\/containers\(0\)\/name: expected a string, got number 3$/],
      [podIn({ labels: { owner: 7 } }), /^\/labels\/owner: expected a string, got number 7$/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'yes' } }), /^\/labels\/sidecar\.istio\.io\/inject: "yes" is neither "true" nor "false"$/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'sidecar.istio.io/proxyCPU': 'lots' } }), /^\/labels\/sidecar\.istio\.io\/proxyCPU: "lots" is not a CPU share/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'citadel.io/capture': 'redirect', 'traffic.sidecar.istio.io/includeInboundPorts': '80,x' } }), /^\/labels\/traffic\.sidecar\.istio\.io\/includeInboundPorts: "x" is not a port/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' } , networks: [{ mode: 'container' }] }), /^\/labels\/traffic\.sidecar\.istio\.io\/excludeOutboundIPRanges: "10\.0\.0\.0\/33" is not an IPv4 CIDR/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'citadel.io/capture': 'transparent' } }), /^\/labels\/citadel\.io\/capture: "transparent" is neither explicit nor redirect$/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'citadel.io/upstreams': '/prod/db:8080' } }), /^\/labels\/citadel\.io\/upstreams: local port 8080 of "\/prod\/db" is already used/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'citadel.io/upstreams': 'db' } }), /^\/labels\/citadel\.io\/upstreams: entry 1 "db" has no ":<local port>"/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'sidecar.istio.io/status': '{oops' } }), /^\/labels\/sidecar\.istio\.io\/status: is not JSON; remove the label/],
      [podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/namespace': 'Bad_NS' } }), /^\/labels\/istio\.io\/namespace: namespace "Bad_NS" must be a DNS label/],
      [podIn({ containers: [{ name: 'istio-proxy', resources: { cpus: 1, mem: 32 } }] }), /^\/containers: a container is already named "istio-proxy", which the sidecar template adds; rename it$/],
      [podIn({ containers: [] }), /^\/containers: a pod needs at least one container$/],
      [podIn({ id: '/Prod/api' }), /^\/id: Marathon id "\/Prod\/api": segment "Prod" must be lowercase/],
      [{ id: '/prod/app', cmd: 'a', args: ['b'], labels: { 'sidecar.istio.io/inject': 'true' } }, /^\/: an app has either 'cmd' or 'args', not both$/],
      [{ id: '/prod/app', cmd: 'a', labels: { 'sidecar.istio.io/inject': 'true' }, networks: [{ mode: 'container' }], container: { volumes: [{ containerPath: 1 }] } }, /^\/container\/volumes\(0\)\/containerPath: expected a string, got number 1$/],
      [{ id: '/prod/app', cmd: 'a', labels: { 'sidecar.istio.io/inject': 'true' }, constraints: [['hostname']] }, /^\/constraints\(0\): a constraint is \["field", "OPERATOR"\]/],
      [[podIn(), { id: 5, containers: [] }], /^\(1\)\/id: expected a string, got number 5$/],
      [{ id: '/g', apps: [{ id: 'a', cmd: 'x', labels: { 'sidecar.istio.io/inject': 'true' }, env: { A: 1 } }] }, /^\/apps\(0\)\/env\/A: expected a string or \{"secret": "<name>"\}$/],
      [{ id: '/g', pods: [{ id: '/g/p', spec: {}, instances: [] }] }, /^\/pods\(0\): is a pod status/],
      ['a string', /^\/: expected a Marathon app, pod or group definition/],
      [{ id: '/prod/p', spec: { id: '/prod/p' }, instances: [] }, /^\/: is a pod status/],
      [{ id: '/prod/nothing', labels: { 'sidecar.istio.io/inject': 'true' } }, /^\/: an app needs 'cmd', 'args' or 'container'/],
    ];
    for (const [def, re] of cases) {
      assert.throws(() => inject(def, injectConfig()), (err: unknown) => {
        assert.ok(err instanceof MarathonParseError, String(err));
        assert.match(err.message, re);
        assert.equal(err.message.split('\n').length, 1);
        return true;
      }, `expected ${re}`);
    }
  });

  it('an opted-out or not-opted-in workload is left alone even when its identity would be invalid', () => {
    const dotted = podIn({ id: '/a.b/api', labels: {} });
    assert.equal(inject(dotted, injectConfig()).reports[0].outcome, 'skipped');
    assert.throws(() => inject(podIn({ id: '/a.b/api' }), injectConfig()), /\/id: namespace "a\.b" must be a DNS label/);
  });
});

describe('the injected sidecar command', () => {
  it('starts Envoy with the inline bootstrap and the node id from the Mesos environment', async (t) => {
    const envoy = requireEnvoy(t);
    if (!envoy) return;
    const adminPort = await freePort();
    const pod = inject(podIn({ labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': 'payments' } }), injectAll({ adminPort })).definition as Obj;
    const bin = tempDir();
    symlinkSync(envoy, path.join(bin, 'envoy'));
    const child = spawn('sh', ['-c', sidecarOf(pod).exec.command.shell], {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, MESOS_CONTAINER_IP: '10.1.2.3', MESOS_TASK_ID: 'prod_api.instance-7._app.1' },
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    try {
      // an Envoy that exits ends the wait at once, with its stderr
      const info = await waitFor('the sidecar\'s Envoy admin /server_info', async () => {
        if (child.exitCode !== null) return { exited: child.exitCode } as Obj;
        const res = await fetch(`http://127.0.0.1:${adminPort}/server_info`).catch(() => undefined);
        return res?.ok ? ((await res.json()) as Obj) : undefined;
      }, { timeoutMs: 30_000, intervalMs: 100 });
      assert.equal(info.exited, undefined, `envoy exited ${info.exited}: ${stderr.slice(-2000)}`);
      assert.equal(info.node.id, 'sidecar~10.1.2.3~prod_api.instance-7._app.1');
      assert.equal(info.node.cluster, '/prod/api');
      assert.equal(info.node.metadata.CITADEL_SPIFFE_ID, 'spiffe://cluster.local/ns/prod/sa/payments');
      assert.equal(info.command_line_options.disable_hot_restart, true);
      const clusters = await (await fetch(`http://127.0.0.1:${adminPort}/clusters?format=json`)).json() as Obj;
      assert.deepEqual(clusters.cluster_statuses.map((c: Obj) => c.name).sort(), ['sds-grpc', 'xds-grpc']);
    } finally {
      process.kill(-child.pid!, 'SIGKILL');
      await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

