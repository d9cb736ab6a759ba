/**
 * No secret in any log. The whole scenario set runs at --log-level debug: ZooKeeper with
 * --zk-auth-file, a KEK, `citadel server` with an audit log, `citadel marathon-sim`, join tokens
 * (used, replayed, bogus, for the wrong host), a `citadel agent`, CSR refusals of every kind, a
 * node eviction. Then every byte the processes wrote (stderr, stdout except the token that
 * `token create` exists to print, the audit log) is searched for every private key (PEM blocks,
 * their base64 bodies and each line of them), every join token, the KEK and the ZooKeeper password.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CaClient } from '../../src/agent/ca-client';
import { CertificateAuthority } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { spiffeId } from '../../src/pki/identity';
import { parsePemBlocks } from '../../src/pki/pem';
import { kekFromBytes } from '../../src/store/kek';
import { digestAuth } from '../../src/store/zk/auth';
import { openZkStore } from '../../src/store/zk/zk-store';
import { bundleProblems } from '../agent/bundle-check';
import { CitadelAgentProcess, startCitadelAgent } from '../helpers/citadel-agent';
import { CitadelServerProcess, startCitadelServer } from '../helpers/citadel-server';
import { MarathonSimProcess, startMarathonSimProcess } from '../helpers/marathon-sim';
import { waitFor } from '../helpers/wait';
import { startZooKeeper, ZooKeeperServer } from '../helpers/zookeeper';
import { credentialFor, csrFor, node, workload } from '../server/fixtures';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');

/** Everything a secret could be logged as: the whole value and the pieces a log line might hold. */
function forms(secret: string): string[] {
  const out = new Set<string>([secret]);
  for (const block of parsePemBlocks(secret)) {
    const body = block.der.toString('base64');
    out.add(body);
    for (let i = 0; i < body.length; i += 64) if (body.length - i >= 32) out.add(body.slice(i, i + 64));
  }
  return [...out].filter((s) => s.length >= 16);
}

describe('no secret in any log', () => {
  let zk: ZooKeeperServer;
  let sim: MarathonSimProcess;
  let server: CitadelServerProcess;
  let agent: CitadelAgentProcess;
  let dir: string;
  let url: string;
  const outputs: Array<{ what: string; text: string }> = [];
  const secrets: Array<{ what: string; value: string }> = [];
  const zkPassword = `zk-${randomBytes(12).toString('hex')}`;
  let kekBytes: Buffer;
  let root: string;

  /** Runs the CLI and keeps what it printed (all of it, or only stderr for `token create`'s token). */
  async function citadel(what: string, args: string[], opts: { stdoutIsTheProduct?: boolean } = {}): Promise<string> {
    const r = await run(process.execPath, [CLI, ...args]).catch((e: { stdout: string; stderr: string }) => e);
    outputs.push({ what: `${what} (stderr)`, text: r.stderr });
    if (!opts.stdoutIsTheProduct) outputs.push({ what: `${what} (stdout)`, text: r.stdout });
    return r.stdout;
  }

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-nosecret-'));
    zk = await startZooKeeper();
    url = zk.url('/citadel-nosecret');
    const authFile = path.join(dir, 'zk-auth');
    writeFileSync(authFile, `citadel:${zkPassword}\n`, { mode: 0o600 });
    const kekFile = path.join(dir, 'kek');
    await citadel('kek-generate', ['store', 'kek-generate', kekFile]);
    kekBytes = readFileSync(kekFile);
    const storeFlags = ['--store', url, '--zk-auth-file', authFile];

    sim = await startMarathonSimProcess(['--agents', 'agent-1']);
    for (const [id, sa] of [['/shop/cart', 'cart'], ['/shop/payments', 'payments']]) {
      const res = await fetch(`${sim.url}/v2/apps`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id, cmd: 'sleep 1000', instances: 1, labels: { 'istio.io/service-account': sa } }) });
      assert.equal(res.status, 201);
    }
    server = await startCitadelServer([...storeFlags, '--kek-file', kekFile, '--marathon', sim.url, '--log-level', 'debug', '--audit-log', path.join(dir, 'audit.log')], { timeoutMs: 60_000 });
    const inspector = await openZkStore(url, { kek: kekFromBytes(kekBytes), auth: digestAuth(`citadel:${zkPassword}`, 'test') });
    try {
      const ca = (await inspector.getCaSecret())!;
      root = ca.caCertPem;
      writeFileSync(path.join(dir, 'root.pem'), root);
      secrets.push({ what: 'the CA key', value: ca.caKeyPem });
    } finally {
      await inspector.close();
    }

    // A token for the agent, one replayed, one for the wrong host, one made up.
    const token = (await citadel('token create', ['token', 'create', '--host', 'agent-1', ...storeFlags], { stdoutIsTheProduct: true })).trim();
    const wrongHost = (await citadel('token create', ['token', 'create', '--host', 'agent-2', ...storeFlags], { stdoutIsTheProduct: true })).trim();
    const bogus = `cjt1.${randomBytes(32).toString('base64url')}`;
    secrets.push({ what: 'the join token', value: token }, { what: 'a join token for another host', value: wrongHost }, { what: 'a made-up join token', value: bogus });
    writeFileSync(path.join(dir, 'token'), token + '\n');
    agent = startCitadelAgent(['--ca-address', `127.0.0.1:${server.grpcPort}`, '--ca-root', path.join(dir, 'root.pem'), '--join-token-file', path.join(dir, 'token'), '--host', 'agent-1', '--certs-dir', path.join(dir, 'certs'), '--log-level', 'debug']);
    await waitFor('both bundles', async () => (await bundleProblems(path.join(dir, 'certs'), 'shop', 'cart', root)).length + (await bundleProblems(path.join(dir, 'certs'), 'shop', 'payments', root)).length === 0, 30_000);

    // Agents refused: a replayed token, one for another host, a made-up one.
    for (const [what, t, host] of [['replayed', token, 'agent-1'], ['wrong host', wrongHost, 'agent-3'], ['bogus', bogus, 'agent-1']] as const) {
      await citadel(`agent with a ${what} token`, ['agent', '--monitoring-port', '0', '--ca-address', `127.0.0.1:${server.grpcPort}`, '--ca-root', path.join(dir, 'root.pem'), '--join-token', t, '--host', host, '--certs-dir', path.join(dir, `certs-${what.replace(' ', '-')}`), '--log-level', 'debug']);
    }

    // CSR refusals over gRPC, by a workload and by a node.
    const signer = CertificateAuthority.fromSecret({ caCertPem: root, caKeyPem: secrets[0].value }, DEFAULT_CA_CONFIG);
    const me = workload('shop', 'cart');
    const cred = credentialFor(signer, me);
    secrets.push({ what: 'a workload client key', value: cred.keyPem });
    const c = new CaClient({ address: `127.0.0.1:${server.grpcPort}`, rootCertPem: root, ...cred });
    try {
      for (const [what, req] of [
        ['another identity', csrFor(spiffeId(workload('shop', 'admin')))],
        ['a DNS SAN', csrFor(spiffeId(me), { dnsNames: ['evil.example.com'] })],
        ['a CommonName', csrFor(spiffeId(me), { commonName: 'root' })],
      ] as const) {
        secrets.push({ what: `the key of a CSR naming ${what}`, value: req.keyPem });
        const err = await c.createCertificate(req.csr).catch((e) => e);
        assert.notEqual(err.code, undefined, what);
        const legacy = await c.handleCsr(req.csr);
        assert.equal(legacy.isApproved, false);
      }
      const garbage = await c.createCertificate('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n').catch((e) => e);
      assert.equal(garbage.code, status.INVALID_ARGUMENT);
      const ttl = await c.createCertificate(csrFor(spiffeId(me)).csr, 1000 * 86400).catch((e) => e);
      assert.equal(ttl.code, status.INVALID_ARGUMENT);
    } finally {
      c.close();
    }
    const nodeCred = credentialFor(signer, node('agent-1'));
    secrets.push({ what: 'a node client key', value: nodeCred.keyPem });
    const n = new CaClient({ address: `127.0.0.1:${server.grpcPort}`, rootCertPem: root, ...nodeCred });
    try {
      const err = await n.createCertificate(csrFor(spiffeId(workload('ops', 'not-here'))).csr).catch((e) => e);
      assert.equal(err.code, status.PERMISSION_DENIED);
    } finally {
      n.close();
    }

    // An eviction, and the operator's commands.
    await citadel('node list', ['node', 'list', ...storeFlags]);
    await citadel('node evict', ['node', 'evict', 'agent-1', ...storeFlags]);
    await agent.waitForLog((l) => /the CA refuses this node's secret feed/.test(l.msg));
    await citadel('token list', ['token', 'list', ...storeFlags]);
    await citadel('audit', ['audit', '--file', path.join(dir, 'audit.log')]);
    await citadel('store list', ['store', 'list', ...storeFlags, '--kek-file', kekFile]);

    // The keys the store holds now (every workload secret), and the agent's own.
    const after = await openZkStore(url, { kek: kekFromBytes(kekBytes), auth: digestAuth(`citadel:${zkPassword}`, 'test') });
    try {
      for (const s of await after.listSecrets()) secrets.push({ what: `the key of ${s.namespace}/${s.name}`, value: s.keyPem });
    } finally {
      await after.close();
    }
    secrets.push({ what: 'the node key', value: readFileSync(path.join(dir, 'certs', '.citadel-agent', 'node.pem'), 'utf8') });
    for (const sa of ['cart', 'payments']) secrets.push({ what: `the agent's ${sa} key.pem`, value: readFileSync(path.join(dir, 'certs', 'shop', sa, 'key.pem'), 'utf8') });
    secrets.push(
      { what: 'the KEK (hex)', value: kekBytes.toString('hex') },
      { what: 'the KEK (base64)', value: kekBytes.toString('base64') },
      { what: 'the KEK (base64url)', value: kekBytes.toString('base64url') },
      { what: 'the ZooKeeper password', value: zkPassword },
    );
  });
  after(async () => {
    await agent?.stop();
    await server?.stop();
    await sim?.stop();
    await zk?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the scenario ran what it means to check: debug logs, refusals, attestations, an eviction', () => {
    const serverLog = server.raw();
    assert.match(serverLog, /"level":"debug"/);
    assert.match(serverLog, /node attestation refused/);
    assert.match(serverLog, /node evicted/);
    assert.match(agent.raw(), /"level":"debug"/);
    // The refused agents ended (exit 2, one line) rather than hanging on.
    for (const what of ['replayed', 'wrong host', 'bogus']) {
      assert.match(outputs.find((o) => o.what === `agent with a ${what} token (stderr)`)!.text, /^citadel: node attestation refused: /m, what);
    }
    assert.ok(secrets.filter((s) => s.what.startsWith('the key of ')).length >= 2);
    assert.ok(secrets.length >= 15);
  });

  it('no private key, join token, KEK or ZooKeeper password appears in any output', () => {
    const all = [
      ...outputs,
      { what: 'citadel server', text: server.raw() },
      { what: 'citadel agent', text: agent.raw() },
      { what: 'citadel marathon-sim', text: sim.stderr() },
      { what: 'the audit log', text: readFileSync(path.join(dir, 'audit.log'), 'utf8') },
      ...readdirSync(dir).filter((f) => f.endsWith('.log') && f !== 'audit.log').map((f) => ({ what: f, text: readFileSync(path.join(dir, f), 'utf8') })),
    ];
    assert.ok(all.reduce((n, o) => n + o.text.length, 0) > 10_000, 'there is output to search');
    const found: string[] = [];
    for (const o of all) {
      if (/PRIVATE KEY/.test(o.text)) found.push(`${o.what}: a PEM PRIVATE KEY block`);
      for (const s of secrets) for (const f of forms(s.value)) if (o.text.includes(f)) found.push(`${o.what}: ${s.what}`);
    }
    assert.deepEqual([...new Set(found)], []);
  });
});
