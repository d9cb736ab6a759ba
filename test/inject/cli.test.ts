/** `citadel inject` as users run it: the built CLI, its stdout, stderr and exit codes. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_TEMPLATE_FILE } from '../../src/inject/template';
import { repoRoot, tempDir } from '../helpers/pki';

type Obj = Record<string, any>;
const main = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

function citadel(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', input });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const pod = {
  id: '/prod/api',
  labels: { 'sidecar.istio.io/inject': 'true' },
  containers: [{ name: 'app', resources: { cpus: 0.5, mem: 64 }, endpoints: [{ name: 'http', containerPort: 8080 }] }],
  networks: [{ mode: 'container', name: 'dcos' }],
};
const app = {
  id: '/prod/web',
  cmd: 'serve --port $PORT0',
  labels: { 'sidecar.istio.io/inject': 'true' },
  container: { type: 'DOCKER', docker: { image: 'web:1', network: 'BRIDGE', portMappings: [{ containerPort: 80, hostPort: 0 }], parameters: [{ key: 'cap-add', value: 'NET_ADMIN' }] } },
  readinessChecks: [{ path: '/ready' }],
};

function write(name: string, content: unknown): string {
  const file = path.join(tempDir(), name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 4));
  return file;
}

describe('citadel inject', () => {
  it('injects a pod: the result on stdout, one report line on stderr, exit 0', () => {
    const r = citadel(['inject', '-f', write('pod.json', pod)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, 'injected /prod/api (pod)\n');
    const out = JSON.parse(r.out) as Obj;
    assert.deepEqual(out.containers.map((c: Obj) => c.name), ['app', 'istio-proxy']);
    assert.ok(r.out.endsWith('}\n'));
  });

  it('converts an app, says so, and names what could not be carried over', () => {
    const r = citadel(['inject', '-f', write('app.json', app)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, [
      'injected /prod/web (pod, converted from app)',
      '  not carried over: /container/docker/parameters (the Mesos containerizer takes no Docker parameters)',
      '  not carried over: /readinessChecks (pods have no readiness checks)',
      '  changed: /container/type: DOCKER; a pod runs the image with the Mesos containerizer',
      "  changed: $PORT0, $PORTS: set in the pod's environment to the container ports (pods set ENDPOINT_<NAME> instead)",
      '',
    ].join('\n'));
    const out = JSON.parse(r.out) as Obj;
    assert.deepEqual(JSON.parse(out.labels['citadel.io/converted-from-app']), { notCarried: ['/container/docker/parameters', '/readinessChecks'] });
    assert.deepEqual(out.containers[0].exec, { command: { shell: 'serve --port $PORT0' } });
  });

  it('reads a list from stdin, reports each resource, and -o writes a file that re-injects to the same bytes', () => {
    const hostPod = { ...pod, id: '/prod/host', networks: [{ mode: 'host' }] };
    const optOut = { ...pod, id: '/prod/off', labels: { 'sidecar.istio.io/inject': 'false' } };
    const outFile = path.join(tempDir(), 'out.json');
    const r = citadel(['inject', '-f', '-', '-o', outFile], JSON.stringify([pod, hostPod, optOut, app]));
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, '');
    assert.deepEqual(r.err.split('\n').filter((l) => !l.startsWith('  ')), [
      'injected /prod/api (pod)',
      'skipped /prod/host: host networking (capture would change the host; move it onto a container network)',
      'skipped /prod/off: opt-out (sidecar.istio.io/inject: "false")',
      'injected /prod/web (pod, converted from app)',
      '',
    ]);
    const first = readFileSync(outFile, 'utf8');
    const list = JSON.parse(first) as Obj[];
    assert.deepEqual(list[1], hostPod);
    assert.deepEqual(list[2], optOut);
    const again = citadel(['inject', '-f', outFile]);
    assert.equal(again.code, 0, again.err);
    assert.equal(again.out, first, 'the same bytes');
    assert.equal(again.err.split('\n').filter((l) => l.endsWith('already current')).length, 2);
  });

  it('--diff prints the changed leaves of each resource; nothing once it is current', () => {
    const r = citadel(['inject', '-f', write('pod.json', pod), '--diff']);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 2), ['--- /prod/api (pod)', '+++ /prod/api (pod, with sidecar)']);
    assert.match(lines[2], /^\+ \/labels\/sidecar\.istio\.io\/status: "\{\\"version\\":\\"[0-9a-f]{64}\\",\\"containers\\":\[\\"istio-proxy\\"\],\\"volumes\\":\[\\"citadel-identity\\"\]\}"$/);
    assert.ok(lines.includes('+ /containers(1)/name: "istio-proxy"'), r.out);
    assert.ok(lines.includes('+ /containers(1)/image/id: "docker.io/envoyproxy/envoy:v1.40.0"'));
    assert.ok(lines.includes('+ /volumes(0)/host: "/var/run/citadel/sds/prod/default"'));
    assert.ok(lines.every((l, i) => i < 2 || /^[+-] \//.test(l)), r.out);
    assert.equal(lines.slice(2).filter((l) => l.startsWith('-')).length, 0, 'nothing removed');

    const injected = write('injected.json', citadel(['inject', '-f', write('pod.json', pod)]).out);
    const current = citadel(['inject', '-f', injected, '--diff']);
    assert.equal(current.out, '');
    assert.equal(current.err, 'skipped /prod/api: already current\n');

    const files = citadel(['inject', '-f', injected, '--diff', '--mode', 'files', '--certs-dir', '/srv/certs']);
    assert.ok(files.out.includes('- /volumes(0)/host: "/var/run/citadel/sds/prod/default"\n+ /volumes(0)/host: "/srv/certs/prod/default"\n'), files.out);
    assert.ok(files.out.includes('+ /containers(1)/volumeMounts(0)/mountPath: "/etc/certs"'));
    assert.equal(files.err, 'injected /prod/api (pod, sidecar replaced)\n');
  });

  it('--inject-config turns namespaces on and sets their capture mode; --template replaces the sidecar', () => {
    const config = write('inject.json', { image: 'registry.local/envoy:1.40', namespaces: { prod: { inject: true, capture: 'redirect' } } });
    const unlabelled = { ...pod, labels: {} };
    const r = citadel(['inject', '-f', write('pod.json', unlabelled), '--inject-config', config]);
    assert.equal(r.code, 0, r.err);
    const sidecar = (JSON.parse(r.out) as Obj).containers[1];
    assert.equal(sidecar.image.id, 'registry.local/envoy:1.40');
    assert.equal(sidecar.user, 'root');
    assert.match(sidecar.exec.command.shell, / citadel-iptables -p 15001 -z 15006 -u 1337 -g 1337 -b 8080 /);
    const flags = citadel(['inject', '-f', write('pod.json', unlabelled), '--inject-config', config, '--capture', 'explicit']);
    assert.equal((JSON.parse(flags.out) as Obj).containers[1].user, undefined, 'a flag wins over the namespace entry');

    const template = write('t.json', readFileSync(DEFAULT_TEMPLATE_FILE, 'utf8').replace('"lifecycle": { "killGracePeriodSeconds": 5 }', '"lifecycle": { "killGracePeriodSeconds": 20 }'));
    const t = citadel(['inject', '-f', write('pod.json', pod), '--template', template]);
    assert.equal(t.code, 0, t.err);
    assert.deepEqual((JSON.parse(t.out) as Obj).containers[1].lifecycle, { killGracePeriodSeconds: 20 });
  });

  it('reads a YAML inject config when the yaml package is installed, and says so when it is not', () => {
    const config = write('inject.yaml', 'namespaces:\n  prod:\n    inject: true\n');
    const r = citadel(['inject', '-f', write('pod.json', { ...pod, labels: {} }), '--inject-config', config]);
    let hasYaml = true;
    try {
      require.resolve('yaml');
    } catch {
      hasYaml = false;
    }
    if (hasYaml) {
      assert.equal(r.code, 0, r.err);
      assert.equal(r.err, 'injected /prod/api (pod)\n');
    } else {
      assert.equal(r.code, 2);
      assert.match(r.err, /^citadel: .*inject\.yaml: YAML needs the "yaml" package, which is not installed; write the inject config as JSON\n$/);
    }
  });

  it('bad input: one line naming the file and the JSON path, exit 2, nothing written', () => {
    const outFile = path.join(tempDir(), 'never.json');
    const cases: Array<[string[], RegExp, string?]> = [
      [['-f', write('pod.json', { ...pod, containers: [{ name: 3 }] })], /^citadel: .*pod\.json: \/containers\(0\)\/name: expected a string, got number 3$/],
      [['-f', '-'], /^citadel: stdin: \(1\)\/labels\/sidecar\.istio\.io\/inject: "yes" is neither "true" nor "false"$/, JSON.stringify([pod, { ...pod, labels: { 'sidecar.istio.io/inject': 'yes' } }])],
      [['-f', write('bad.json', '{"id": ')], /^citadel: .*bad\.json: not JSON \(/],
      [['-f', '/nonexistent/pod.json'], /^citadel: definition \/nonexistent\/pod\.json: no such file$/],
      [['-f', write('pod.json', pod), '--inject-config', write('c.json', { namespaces: { prod: { inject: 'yes' } } })], /^citadel: .*c\.json: \/namespaces\/prod\/inject: expected true or false$/],
      [['-f', write('pod.json', pod), '--inject-config', write('c.json', { injekt: true })], /^citadel: .*c\.json: \/injekt: unknown key/],
      [['-f', write('pod.json', pod), '--template', write('t.json', { containers: [{ name: 'p', image: { id: '{{img}}' } }] })], /^citadel: .*t\.json: \/containers\(0\)\/image\/id: unknown placeholder \{\{img\}\}/],
      [['-f', write('pod.json', pod), '--xds-address', 'citadel'], /^citadel: --xds-address: "citadel" is not host:port/],
      [['-f', write('pod.json', pod), '--sds-dir', 'relative'], /^citadel: --sds-dir: "relative" must be an absolute path/],
      [['-f', write('pod.json', pod), '--trust-domain', 'Bad Domain'], /^citadel: --trust-domain: trust domain "Bad Domain" must be lowercase/],
    ];
    for (const [args, re, input] of cases) {
      const r = citadel(['inject', ...args, '-o', outFile], input);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err.trimEnd(), re);
      assert.equal(r.err.trimEnd().split('\n').length, 1, r.err);
      assert.equal(r.out, '');
      assert.equal(existsSync(outFile), false);
    }
  });
});
