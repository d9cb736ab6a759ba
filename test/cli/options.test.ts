/** Shared flags are parsed in one place: every command refuses the same bad values the same way (exit 2, one line). */
import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { cliPath, tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';

function citadel(...args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Runs citadel until its output matches `ready` (then stops it with SIGTERM), or until it exits. */
async function citadelUntil(args: string[], ready: RegExp): Promise<{ ready: boolean; out: string }> {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  try {
    await waitFor(`citadel ${args[0]} to print ${ready}`, () => ready.test(out) || gone, 20_000);
    return { ready: ready.test(out), out };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  }
}

/**
 * Every command that takes --trust-domain (and --log-level): its arguments but for those flags,
 * and how a good value shows it was taken (the output, or the point the command reached).
 */
interface FlagCase {
  args: (dir: string) => string[];
  /** runs to completion with a good value: what its output shows */
  done?: RegExp;
  /** runs until stopped: what it prints once it is past its flags */
  running?: RegExp;
}

const GOOD = 'good.example';
const pod = { id: '/prod/api', labels: { 'sidecar.istio.io/inject': 'true' }, containers: [{ name: 'app', resources: { cpus: 0.1, mem: 32 }, endpoints: [{ name: 'http', containerPort: 8080 }] }], networks: [{ mode: 'container', name: 'dcos' }] };
const CASES: Record<string, FlagCase> = {
  'ca init': { args: (d) => ['--store', `file:${d}/ca`], done: /subject: +O=good\.example/ },
  'cert issue': { args: (d) => ['--store', `file:${d}/issue`, '--namespace', 'prod', '--service-account', 'api', '-o', `${d}/issued`], done: /issued spiffe:\/\/good\.example\/ns\/prod\/sa\/api/ },
  'envoy-bootstrap': { args: () => ['--service', '/prod/api'], done: /spiffe:\/\/good\.example\/ns\/prod\/sa\/default/ },
  'grpc-bootstrap': { args: () => ['--service', '/prod/api'], done: /spiffe:\/\/good\.example\/ns\/prod\/sa\/default/ },
  inject: {
    args: (d) => {
      writeFileSync(path.join(d, 'pod.json'), JSON.stringify(pod));
      return ['-f', path.join(d, 'pod.json')];
    },
    done: /spiffe:\/\/good\.example\/ns\/prod\/sa\/default/,
  },
  server: {
    args: (d) => ['--store', `file:${d}/server`, '--marathon', 'http://127.0.0.1:1', '--monitoring-port', '0', '--grpc-port', '0', '--xds-port', '0'],
    running: /"msg":"CA ready"[^\n]*"trustDomain":"good\.example"/,
  },
  // with no node certificate and no join token it stops there (exit 2), past its flags
  agent: {
    args: (d) => {
      writeFileSync(path.join(d, 'root.pem'), '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n');
      return ['--ca-address', '127.0.0.1:1', '--ca-root', path.join(d, 'root.pem'), '--host', 'h1', '--certs-dir', path.join(d, 'agent-certs'), '--monitoring-port', '0'];
    },
    running: /no valid node certificate in .* and no --join-token/,
  },
  'admission-proxy': { args: () => ['--marathon', 'http://127.0.0.1:1', '--listen', '127.0.0.1:0'], running: /admission-proxy listening on http:\/\/127\.0\.0\.1:\d+ -> http:\/\/127\.0\.0\.1:1/ },
};

/** `citadel a b` for every command and subcommand, with the long names of its options. */
function commandsOf(cmd: Command, prefix: string[] = []): Array<{ name: string[]; flags: string[] }> {
  return cmd.commands.flatMap((c) => [{ name: [...prefix, c.name()], flags: c.options.map((o) => o.long!) }, ...commandsOf(c, [...prefix, c.name()])]);
}

describe('--trust-domain and --log-level, from the shared options, on every command that takes them', () => {
  const commands = commandsOf(buildProgram());
  const withTrustDomain = commands.filter((c) => c.flags.includes('--trust-domain'));

  it('every such command has a case here (a new one must be added)', () => {
    assert.deepEqual(withTrustDomain.map((c) => c.name.join(' ')).sort(), Object.keys(CASES).sort());
    for (const c of commands.filter((c) => c.flags.includes('--log-level'))) assert.ok(c.name.join(' ') in CASES, `${c.name.join(' ')} takes --log-level`);
  });

  for (const { name, flags } of withTrustDomain) {
    const c = CASES[name.join(' ')];
    if (!c) continue;
    const logs = flags.includes('--log-level');
    it(`citadel ${name.join(' ')}: a bad --trust-domain${logs ? ' or --log-level' : ''} exits 2 with one line; a good one is taken`, async () => {
      const dir = tempDir();
      const base = [...name, ...c.args(dir)];
      const bad = citadel(...base, '--trust-domain', 'Bad_Domain');
      assert.equal(bad.code, 2, `--trust-domain Bad_Domain: ${bad.err}`);
      assert.equal(bad.err.trim().split('\n').length, 1, bad.err);
      assert.match(bad.err, /^citadel: --trust-domain: trust domain "Bad_Domain" must be lowercase letters, digits, dots and dashes/);
      if (logs) {
        const level = citadel(...base, '--log-level', 'bogus');
        assert.equal(level.code, 2, `--log-level bogus: ${level.err}`);
        assert.equal(level.err.trim().split('\n').length, 2, level.err); // the error, then commander's "(run with --help for usage)"
        assert.match(level.err, /^citadel: option '--log-level <level>' argument 'bogus' is invalid/);
      }
      const good = [...base, '--trust-domain', GOOD, ...(logs ? ['--log-level', 'debug'] : [])];
      if (c.done) {
        const r = citadel(...good);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out + r.err, c.done);
      } else {
        const r = await citadelUntil(good, c.running!);
        assert.ok(r.ready, `citadel ${name.join(' ')} did not get past its flags: ${r.out}`);
        assert.doesNotMatch(r.out, /--trust-domain|--log-level/);
      }
    });
  }
});

test('the agent refuses a malformed join token before dialing the CA', () => {
  const dir = tempDir();
  const r = citadel('agent', '--ca-address', '127.0.0.1:1', '--ca-root', path.join(dir, 'missing.pem'), '--host', 'h1', '--certs-dir', dir, '--join-token', 'not-a-token');
  assert.equal(r.code, 2);
  assert.match(r.err, /--ca-root .*cannot read/);
});

test('the agent refuses SDS flags it cannot honour, before dialing the CA', () => {
  const dir = tempDir();
  const root = path.join(dir, 'root.pem');
  writeFileSync(root, '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n');
  const base = ['agent', '--ca-address', '127.0.0.1:1', '--ca-root', root, '--host', 'h1', '--sds-dir', path.join(dir, 'sds')];
  const cases: Array<[string[], RegExp]> = [
    [['--secret-ttl', '500ms'], /^citadel: --secret-ttl: "500ms" is under a second/],
    [['--sds-socket-mode', '999'], /^citadel: --sds-socket-mode: "999" is not an octal mode/],
    [['--sds-dir-owner', 'proxy'], /^citadel: --sds-dir-owner: "proxy" is not UID\[:GID\]/],
  ];
  for (const [flags, message] of cases) {
    const r = citadel(...base, ...flags);
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.err}`);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, message);
  }
});
