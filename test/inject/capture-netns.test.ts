/**
 * Redirect capture for real: the shipped iptables script in a network namespace the test makes
 * (a pod, wired by a veth pair to a second namespace standing for the rest of the network), with
 * a stand-in proxy listening on 15001/15006 as uid 1337. Needs root, ip and iptables (CI installs
 * the Debian package iptables and runs as root).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CAPTURE_SCRIPT_FILE, injectConfig } from '../../src/inject/config';
import { inject } from '../../src/inject/injector';
import { tempDir } from '../helpers/pki';

const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const missing =
  process.getuid?.() !== 0 ? 'needs root (network namespaces and iptables)' :
  !has('ip') ? 'needs ip (apt-get install iproute2)' :
  !has('iptables') ? 'needs iptables (apt-get install iptables)' :
  undefined;
// CI sets CITADEL_REQUIRE_TOOLS=1: there a missing tool or privilege fails the suite instead of skipping it
const required = process.env.CITADEL_REQUIRE_TOOLS === '1';
const skip = missing !== undefined && !required ? missing : false;

const tag = `${process.pid % 100000}`;
const POD = `citadel-pod-${tag}`;
const NET = `citadel-net-${tag}`;
const POD_IP = '10.200.0.1';
const NET_IP = '10.200.0.2';

function run(args: string[]): string {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describe('redirect capture in a network namespace', { skip }, () => {
  const dir = tempDir('citadel-netns-');
  const probe = path.join(dir, 'netns-probe.js');
  const children: ChildProcess[] = [];

  /** Starts a long-running process in `ns` and waits for it to print "ready". */
  function start(ns: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; stderr: () => string }> {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    return new Promise((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (c: string) => {
        out += c;
        if (out.includes('ready\n')) resolve({ child, stderr: () => err });
      });
      child.on('exit', (code) => reject(new Error(`${argv.join(' ')} exited ${code} before it was ready: ${err}`)));
    });
  }

  function stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** What a connection from `ns` (as `uid`) to host:port reached. */
  function connect(ns: string, host: string, port: number, uid?: number): string {
    const argv = ['ip', 'netns', 'exec', ns, process.execPath, probe, 'connect', host, String(port), ...(uid === undefined ? [] : [String(uid)])];
    return run(argv).trim();
  }

  before(() => {
    if (missing) throw new Error(`redirect capture test ${missing}; CITADEL_REQUIRE_TOOLS=1 makes that a failure`);
    // a copy anyone can read: the stand-in proxy runs as uid 1337
    chmodSync(dir, 0o755);
    copyFileSync(path.join(__dirname, 'netns-probe.js'), probe);
    chmodSync(probe, 0o755);
    for (const ns of [POD, NET]) {
      spawnSync('ip', ['netns', 'del', ns]);
      run(['ip', 'netns', 'add', ns]);
      run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    run(['ip', 'link', 'add', `cp${tag}`, 'netns', POD, 'type', 'veth', 'peer', 'name', `cn${tag}`, 'netns', NET]);
    run(['ip', '-n', POD, 'addr', 'add', `${POD_IP}/24`, 'dev', `cp${tag}`]);
    run(['ip', '-n', NET, 'addr', 'add', `${NET_IP}/24`, 'dev', `cn${tag}`]);
    run(['ip', '-n', POD, 'link', 'set', `cp${tag}`, 'up']);
    run(['ip', '-n', NET, 'link', 'set', `cn${tag}`, 'up']);
  });

  after(async () => {
    if (missing) return; // nothing was set up
    await stopAll();
    for (const ns of [POD, NET]) spawnSync('ip', ['netns', 'del', ns]);
    assert.doesNotMatch(run(['ip', 'netns', 'list']), new RegExp(`citadel-(pod|net)-${tag}\\b`), 'namespaces removed');
  });

  /** Stops what a test started, whether it passed or not, so the next one finds its ports free. */
  async function stopAll(): Promise<void> {
    await Promise.all(children.splice(0).map(stop));
  }

  it('sends outbound TCP of other uids to 15001 and inbound endpoint ports to 15006; uid 1337, loopback and excluded ports pass', async () => {
    try {
      await captureBasics();
    } finally {
      await stopAll();
    }
  });

  async function captureBasics(): Promise<void> {
    const outside = await start(NET, [process.execPath, probe, 'listen', 'outside-8080:8080,agent-5051:5051,outside-8081:8081']);
    const app = await start(POD, [process.execPath, probe, 'listen', 'loopback-9999:9999@127.0.0.1,app-7070:7070']);
    const proxy = await start(POD, [
      'sh', CAPTURE_SCRIPT_FILE, '-p', '15001', '-z', '15006', '-u', '1337', '-g', '1337',
      '-b', '8080', '-d', '5051,15000', '-i', '*', '-x', '', '-o', '5051',
      '--', process.execPath, probe, 'listen', 'outbound:15001,inbound:15006',
    ]);
    assert.match(proxy.stderr(), /capturing outbound to :15001, inbound \[8080\] to :15006/);

    // the proxy runs as uid 1337 with no capabilities left
    assert.equal(connect(POD, NET_IP, 8080, 1000), 'outbound uid=1337 capeff=0000000000000000');
    assert.equal(connect(POD, NET_IP, 8080, 0), 'outbound uid=1337 capeff=0000000000000000');
    assert.match(connect(POD, NET_IP, 8080, 1337), /^outside-8080 /, "the proxy's own connections are not captured");
    assert.match(connect(POD, NET_IP, 5051, 1000), /^agent-5051 /, 'the Mesos agent port is excluded');
    assert.match(connect(POD, '127.0.0.1', 9999, 1000), /^loopback-9999 /, 'loopback is not captured');
    assert.match(connect(NET, POD_IP, 8080), /^inbound uid=1337 /, 'inbound to an endpoint port goes to 15006');
    assert.match(connect(NET, POD_IP, 7070), /^app-7070 /, 'inbound to a port that is no endpoint is left alone');

    // run again in the same namespace (a restarted container): the rules are replaced, not doubled
    await stop(proxy.child);
    const again = await start(POD, [
      'sh', CAPTURE_SCRIPT_FILE, '-b', '*', '-d', '7070', '-i', '10.200.0.0/24', '-x', '', '-o', '8081',
      '--', process.execPath, probe, 'listen', 'outbound:15001,inbound:15006',
    ]);
    assert.match(connect(NET, POD_IP, 8080), /^inbound /);
    assert.match(connect(NET, POD_IP, 7070), /^app-7070 /, '-d excludes an inbound port from *');
    assert.match(connect(POD, NET_IP, 8081, 1000), /^outside-8081 /, '-o excludes an outbound port');
    assert.match(connect(POD, NET_IP, 8080, 1000), /^outbound /);
    const rules = run(['ip', 'netns', 'exec', POD, 'iptables', '-t', 'nat', '-S']);
    assert.equal(rules.match(/-A OUTPUT -p tcp -j CITADEL_OUTPUT/g)?.length, 1, rules);
    assert.equal(rules.match(/-A PREROUTING -p tcp -j CITADEL_INBOUND/g)?.length, 1, rules);
    assert.doesNotMatch(rules, /--dport 5051 -j RETURN/, 'the first run\'s exclusions are gone');
    assert.ok(outside && app && again);
  }

  it("the injector's redirect command installs the rules from the pod's endpoints and labels, then runs Envoy as uid 1337", async () => {
    try {
      await injectedCommand();
    } finally {
      await stopAll();
    }
  });

  async function injectedCommand(): Promise<void> {
    const pod = {
      id: '/prod/api',
      labels: { 'sidecar.istio.io/inject': 'true', 'citadel.io/capture': 'redirect', 'traffic.sidecar.istio.io/excludeOutboundPorts': '8081' },
      containers: [{ name: 'app', resources: { cpus: 0.1, mem: 32 }, endpoints: [{ name: 'http', containerPort: 8080, hostPort: 0 }] }],
      networks: [{ mode: 'container', name: 'dcos' }],
    };
    const out = inject(pod, injectConfig()).definition as { containers: Array<{ name: string; user?: string; exec: { command: { shell: string } } }> };
    const sidecar = out.containers.find((c) => c.name === 'istio-proxy')!;
    assert.equal(sidecar.user, 'root');
    // an "envoy" that records its arguments and stands in for the proxy
    const bin = path.join(dir, 'bin');
    run(['mkdir', '-p', bin]);
    chmodSync(bin, 0o755);
    writeFileSync(path.join(bin, 'envoy'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/envoy-args\nexec ${process.execPath} ${probe} listen outbound:15001,inbound:15006\n`, { mode: 0o755 });
    chmodSync(dir, 0o777); // the proxy (uid 1337) writes envoy-args
    const outside = await start(NET, [process.execPath, probe, 'listen', 'outside-8080:8080,outside-8081:8081,agent-5051:5051']);
    const proxy = await start(POD, ['sh', '-c', sidecar.exec.command.shell], {
      PATH: `${bin}:${process.env.PATH}`, MESOS_CONTAINER_IP: POD_IP, MESOS_TASK_ID: 'prod_api.instance-1._app.1',
    });
    assert.match(connect(NET, POD_IP, 8080), /^inbound uid=1337 /);
    assert.match(connect(POD, NET_IP, 8080, 1000), /^outbound uid=1337 /);
    assert.match(connect(POD, NET_IP, 8081, 1000), /^outside-8081 /, 'the excludeOutboundPorts label is honoured');
    assert.match(connect(POD, NET_IP, 5051, 1000), /^agent-5051 /);
    const args = readFileSync(path.join(dir, 'envoy-args'), 'utf8').trim().split('\n');
    assert.equal(args[args.indexOf('--service-node') + 1], `sidecar~${POD_IP}~prod_api.instance-1._app.1`);
    assert.ok(args.includes('--disable-hot-restart'));
    const bootstrap = JSON.parse(args[args.indexOf('--config-yaml') + 1]);
    assert.equal(bootstrap.node.cluster, '/prod/api');
    assert.equal(bootstrap.node.metadata.CITADEL_CAPTURE, 'redirect');
    assert.ok(outside && proxy);
  }
});
