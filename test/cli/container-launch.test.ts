/**
 * The demo's stand-in for a Mesos agent starting a container (src/cli/demo/container-launch.ts) on
 * an injected pod as the simulator reports it, and how the demo finds Envoy.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { containerLaunchOf, resolveMounts } from '../../src/cli/demo/container-launch';
import { findEnvoy } from '../../src/cli/demo/envoy-binary';
import type { JsonObject } from '../../src/common/json';
import { injectConfig } from '../../src/inject/config';
import { inject } from '../../src/inject/injector';
import { MarathonState } from '../../src/marathon/simulator';
import { tempDir } from '../helpers/pki';

type Obj = Record<string, any>;

function runningInjectedPod(): JsonObject {
  const state = new MarathonState({ agents: ['node-7'], containerNetworkCidr: '127.0.1.0/24' });
  const pod = inject({
    id: '/shop/catalog',
    labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': 'catalog' },
    environment: { SHARED: 'pod-wide' },
    containers: [{ name: 'app', resources: { cpus: 0.1, mem: 32 }, exec: { command: { shell: 'node catalog.js' } }, endpoints: [{ name: 'http', containerPort: 8080 }] }],
    networks: [{ mode: 'container', name: 'dcos' }],
  }, injectConfig()).definition;
  state.createPod(pod as Obj);
  return state.podStatus(state.pod('/shop/catalog')) as JsonObject;
}

describe('containerLaunchOf', () => {
  it('gives the sidecar’s shell command with its mount resolved to the host path, and the environment Mesos gives', () => {
    const status = runningInjectedPod();
    const launch = containerLaunchOf(status, 'istio-proxy', (host, p) => `/hosts/${host}${p}`);
    assert.equal(launch.agentHostname, 'node-7');
    assert.equal(launch.containerIp, '127.0.1.1');
    assert.deepEqual(launch.mounts, [{ mountPath: '/var/run/secrets/workload-spiffe-uds', hostPath: '/hosts/node-7/var/run/citadel/sds/shop/catalog' }]);
    const spec = (status as Obj).spec;
    const original = spec.containers.find((c: Obj) => c.name === 'istio-proxy').exec.command.shell as string;
    assert.ok(original.includes('"path":"/var/run/secrets/workload-spiffe-uds/socket"'));
    assert.equal(launch.shell, original.split('/var/run/secrets/workload-spiffe-uds').join('/hosts/node-7/var/run/citadel/sds/shop/catalog'));
    assert.equal(launch.env.MESOS_CONTAINER_IP, '127.0.1.1');
    assert.equal(launch.env.MESOS_TASK_ID, `${(status as Obj).instances[0].id}.istio-proxy`);
    assert.equal(launch.env.SHARED, 'pod-wide');
    assert.equal(launch.env.CITADEL_SPIFFE_ID, 'spiffe://cluster.local/ns/shop/sa/catalog');
  });

  it('refuses what it cannot launch here, naming the JSON path', () => {
    const status = runningInjectedPod() as Obj;
    const noShell = structuredClone(status);
    delete noShell.spec.containers[0].exec;
    assert.throws(() => containerLaunchOf(noShell, 'app'), { message: '/spec/containers(0)/exec/command/shell: is missing; only shell commands are launched here' });
    assert.throws(() => containerLaunchOf({ ...status, instances: [] }, 'istio-proxy'), { message: '/instances: pod /shop/catalog has no instance yet' });
    assert.throws(() => containerLaunchOf(status, 'nginx'), /pod \/shop\/catalog has no container named "nginx"/);
    const secretVolume = structuredClone(status);
    secretVolume.spec.volumes = [{ name: 'citadel-identity', secret: 'x' }];
    assert.throws(() => containerLaunchOf(secretVolume, 'istio-proxy'), /volume "citadel-identity" is not a host volume/);
  });

  it('resolves nested mounts to their own volume and refuses a host path a shell would split', () => {
    const mounts = [{ mountPath: '/etc', hostPath: '/h/etc' }, { mountPath: '/etc/certs', hostPath: '/h/certs' }];
    assert.equal(resolveMounts('a /etc/certs/key.pem b /etc/hosts', mounts), 'a /h/certs/key.pem b /h/etc/hosts');
    assert.throws(() => resolveMounts('x', [{ mountPath: '/etc/certs', hostPath: "/tmp/it's here" }]), /cannot carry unquoted/);
  });
});

describe('findEnvoy', () => {
  const dir = tempDir('citadel-find-envoy-');
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(path.join(bin, 'envoy'), '#!/bin/sh\n');
  chmodSync(path.join(bin, 'envoy'), 0o755);
  writeFileSync(path.join(dir, 'not-executable'), '');
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('takes --envoy alone when given, then $ENVOY_BIN, then envoy on PATH', () => {
    assert.deepEqual(findEnvoy(path.join(bin, 'envoy'), {}), { bin: path.join(bin, 'envoy'), from: '--envoy' });
    assert.deepEqual(findEnvoy('/nonexistent/envoy', { ENVOY_BIN: path.join(bin, 'envoy') }), { why: '--envoy /nonexistent/envoy is not an executable file' });
    assert.deepEqual(findEnvoy(undefined, { ENVOY_BIN: path.join(bin, 'envoy'), PATH: '' }), { bin: path.join(bin, 'envoy'), from: '$ENVOY_BIN' });
    assert.equal(findEnvoy(path.join(dir, 'not-executable'), {}).bin, undefined);
    assert.equal(findEnvoy(bin, {}).bin, undefined, 'a directory is no binary');
  });

  it('then .venv-envoy/bin/envoy in the package, then envoy on PATH, or says where it looked', () => {
    const pkg = tempDir('citadel-find-envoy-pkg-');
    assert.deepEqual(findEnvoy(undefined, { PATH: `/nonexistent:${bin}` }, pkg), { bin: path.join(bin, 'envoy'), from: 'PATH' });
    mkdirSync(path.join(pkg, '.venv-envoy', 'bin'), { recursive: true });
    writeFileSync(path.join(pkg, '.venv-envoy', 'bin', 'envoy'), '#!/bin/sh\n');
    chmodSync(path.join(pkg, '.venv-envoy', 'bin', 'envoy'), 0o755);
    assert.deepEqual(findEnvoy(undefined, { PATH: bin }, pkg), { bin: path.join(pkg, '.venv-envoy', 'bin', 'envoy'), from: '.venv-envoy' });
    const none = findEnvoy(undefined, { PATH: '/nonexistent', ENVOY_BIN: '/nonexistent/envoy' }, dir);
    assert.ok('why' in none);
    assert.equal(none.why, 'no Envoy found (--envoy, $ENVOY_BIN=/nonexistent/envoy, .venv-envoy/bin/envoy, envoy on PATH)');
    rmSync(pkg, { recursive: true, force: true });
  });
});
