/**
 * `citadel agent` as a process with the SDS flags a platform team changes (socket name, socket and
 * directory modes and owner, RSA keys) over a stale socket left by a crash; and what it tells an operator: /metrics,
 * /healthz and /debug/sds, read over HTTP as Prometheus and a person would.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCertificatePem } from '../../src/pki/certificate';
import { describeKey, publicKeyFromSpki } from '../../src/pki/keys';
import { splitCertificates } from '../../src/pki/pem';
import { newJoinToken } from '../../src/server/join-token';
import { CaFixture, placeApp, startCaFixture } from '../server/fixtures';
import { CitadelAgentProcess, startCitadelAgent } from '../helpers/citadel-agent';
import { cliPath, tempDir } from '../helpers/pki';
import { SdsTestClient } from '../helpers/sds-client';
import { waitFor } from '../helpers/wait';

/** The value of one series in Prometheus text, or undefined. */
function sample(metrics: string, name: string, labels = ''): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('citadel agent: SDS flags and what it reports', () => {
  let f: CaFixture;
  let agent: CitadelAgentProcess;
  let sdsDir: string;
  let monitoring: string;
  const uid = process.getuid!();
  const gid = process.getgid!();
  // As root (CI) the directories go to the sidecar's user, as Istio's 1337; otherwise to ourselves.
  const owner = uid === 0 ? { uid: 1337, gid: 1337 } : { uid, gid };
  const clients: SdsTestClient[] = [];

  before(async () => {
    f = await startCaFixture({ rateLimit: { ratePerSecond: 0, burst: 0 } });
    placeApp(f.view, '/shop/web', 'shop', 'web', ['agent-1']);
    sdsDir = tempDir();
    // A socket file left by an agent that was killed: the new one must replace it, not fail on EADDRINUSE.
    fs.mkdirSync(path.join(sdsDir, 'shop', 'web'), { recursive: true });
    const stale = net.createServer().listen(path.join(sdsDir, 'shop', 'web', 'sds.sock'));
    await new Promise((r) => stale.once('listening', r));
    // Closing a server unlinks its socket; a crashed process leaves it: copy the inode's name back.
    fs.linkSync(path.join(sdsDir, 'shop', 'web', 'sds.sock'), path.join(sdsDir, 'stale'));
    await new Promise((r) => stale.close(r));
    fs.renameSync(path.join(sdsDir, 'stale'), path.join(sdsDir, 'shop', 'web', 'sds.sock'));
    assert.ok(fs.statSync(path.join(sdsDir, 'shop', 'web', 'sds.sock')).isSocket(), 'a stale socket file is in place');

    const rootFile = path.join(tempDir(), 'root-cert.pem');
    fs.writeFileSync(rootFile, f.ca.rootCertPem);
    const t = newJoinToken('agent-1', 60_000);
    await f.store.putJoinToken(t.record);
    agent = startCitadelAgent([
      '--ca-address', f.address, '--ca-root', rootFile, '--join-token', t.token, '--host', 'agent-1', '--state-dir', tempDir(),
      '--sds-dir', sdsDir, '--sds-socket-name', 'sds.sock', '--sds-socket-mode', '0660', '--sds-dir-mode', '0710',
      '--sds-dir-owner', `${owner.uid}:${owner.gid}`, '--key-algorithm', 'rsa-2048',
      '--xds-address', '127.0.0.1:1', // nothing there: the xds socket is made all the same, dialled only when a sidecar connects

    ]);
    const listening = await agent.waitForLog((l) => l.msg === 'monitoring listening');
    monitoring = `http://127.0.0.1:${String(listening.port)}`;
    await agent.waitForLog((l) => l.msg === 'agent running', 20_000);
  });
  after(async () => {
    for (const c of clients) c.close();
    await agent?.stop();
    await f?.close();
  });

  it('the SDS and xds sockets have the name, mode and owner asked for, in a directory of the mode asked for; the stale one was replaced', async () => {
    const socket = path.join(sdsDir, 'shop', 'web', 'sds.sock');
    const xds = path.join(sdsDir, 'shop', 'web', 'xds');
    await waitFor('the sockets', () => [socket, xds].every((p) => fs.existsSync(p) && fs.statSync(p).isSocket()));
    for (const p of [socket, xds]) {
      const st = fs.statSync(p);
      assert.equal(st.mode & 0o777, 0o660, `${p}: --sds-socket-mode`);
      assert.deepEqual({ uid: st.uid, gid: st.gid }, owner, `${p}: --sds-dir-owner`);
    }
    const dir = fs.statSync(path.dirname(socket));
    assert.equal(dir.mode & 0o777, 0o710, '--sds-dir-mode 0710, not the default 0750');
    assert.deepEqual({ uid: dir.uid, gid: dir.gid }, owner);
    assert.equal(fs.existsSync(path.join(sdsDir, 'shop', 'web', 'socket')), false, 'no socket under the default name');
  });

  it('serves an RSA 2048 key made on the node (--key-algorithm rsa-2048)', async () => {
    const c = new SdsTestClient(path.join(sdsDir, 'shop', 'web', 'sds.sock'));
    clients.push(c);
    const r = await c.fetch(['default']);
    const leaf = parseCertificatePem(splitCertificates(r.secrets[0].certificateChain!)[0]);
    assert.equal(describeKey(publicKeyFromSpki(leaf.spkiDer)), 'RSA 2048');
    assert.match(r.secrets[0].privateKey!, /^-----BEGIN PRIVATE KEY-----/);
  });

  it('/metrics counts streams, pushes, NACKs and CSRs and gives each identity its expiry; /debug/sds names serial, expiry and the last NACK; /healthz is ready', async () => {
    const c = new SdsTestClient(path.join(sdsDir, 'shop', 'web', 'sds.sock'));
    clients.push(c);
    const s = c.open(['default']);
    const first = await s.next();
    const leaf = parseCertificatePem(splitCertificates(first.secrets[0].certificateChain!)[0]);
    s.nack(first, ['default'], '', 'Failed to load private key from <inline>');

    const metrics = await waitFor('the NACK counted', async () => {
      const text = await (await fetch(`${monitoring}/metrics`)).text();
      return (sample(text, 'citadel_agent_sds_nacks_total', '{api="v3"}') ?? 0) >= 1 ? text : undefined;
    });
    assert.equal(sample(metrics, 'citadel_agent_sds_streams', '{api="v3"}'), 1, 'one stream open now');
    assert.ok((sample(metrics, 'citadel_agent_sds_pushes_total', '{api="v3"}') ?? 0) >= 2, 'the fetch and this stream were answered');
    assert.equal(sample(metrics, 'citadel_agent_csr_duration_seconds_count'), 1, 'one CSR for the identity, whatever the number of streams');
    assert.equal(sample(metrics, 'citadel_agent_csr_errors_total'), 0);
    assert.equal(sample(metrics, 'citadel_agent_workload_cert_expiry_timestamp_seconds', '{spiffe_id="spiffe://cluster.local/ns/shop/sa/web"}'), leaf.notAfter.getTime() / 1000);

    const debug = (await (await fetch(`${monitoring}/debug/sds`)).json()) as { certificates: Array<{ spiffeId: string; serial: string; notAfter: string }>; lastNack?: { error?: string } };
    assert.deepEqual(debug.certificates, [{ spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', serial: leaf.serialHex, notAfter: leaf.notAfter.toISOString() }]);
    assert.match(JSON.stringify(debug.lastNack), /Failed to load private key from <inline>/);

    const health = await fetch(`${monitoring}/healthz`);
    assert.equal(health.status, 200, await health.clone().text());
    assert.equal(((await health.json()) as { ready: boolean }).ready, true);
    s.close();
  });

  it('--sds-dir-mode refuses what is not an octal mode, one that shuts the agent out, or one that lets other users in, in one line before dialing the CA', () => {
    const root = path.join(tempDir(), 'root.pem');
    fs.writeFileSync(root, f.ca.rootCertPem);
    const base = ['agent', '--ca-address', '127.0.0.1:1', '--ca-root', root, '--host', 'h1', '--sds-dir', path.join(tempDir(), 'sds'), '--monitoring-port', '0'];
    const cases: Array<[string, RegExp]> = [
      ['rwxr-x---', /^citadel: --sds-dir-mode: "rwxr-x---" is not an octal mode like 0750$/],
      ['0980', /^citadel: --sds-dir-mode: "0980" is not an octal mode like 0750$/],
      ['0550', /^citadel: --sds-dir-mode: "0550" must give the owner rwx \(7 first, e.g. 0750\)/],
      ['0755', /^citadel: --sds-dir-mode: "0755" gives other users access \(last digit must be 0, e.g. 0750\)/],
    ];
    for (const [mode, message] of cases) {
      const r = spawnSync(process.execPath, [cliPath, ...base, '--sds-dir-mode', mode], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, `${mode}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr.trim(), message);
    }
  });
});
