/**
 * Node eviction end to end, as an operator does it: `citadel server` and `citadel agent`
 * processes, the Marathon simulator, `citadel node list`, `citadel node evict`, `citadel token`.
 * An evicted agent gets nothing more (its feed is closed, its node certificate refused), keeps its
 * files until their certificates expire, and logs the refusal as a refusal, not as an outage;
 * a new join token admits it again.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CaClient } from '../../src/agent/ca-client';
import { parseAuditLine } from '../../src/ca/audit-log';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { parseCertificatePem } from '../../src/pki/certificate';
import { parsePemBlocks, toPem } from '../../src/pki/pem';
import { FileStore } from '../../src/store/file-store';
import { CitadelAgentProcess, startCitadelAgent } from '../helpers/citadel-agent';
import { CitadelServerProcess, startCitadelServer } from '../helpers/citadel-server';
import type { LogLine } from '../helpers/log-lines';
import { waitFor } from '../helpers/wait';
import { csrFor, node, spiffeId } from '../server/fixtures';
import { bundleProblems } from './bundle-check';

const run = promisify(execFile);
const MAIN = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
const citadel = async (...args: string[]) => (await run(process.execPath, [MAIN, ...args])).stdout;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The node key and certificate the agent saved, as a client credential. */
function nodeCredential(stateDir: string): { keyPem: string; certChainPem: string; serialHex: string } {
  const blocks = parsePemBlocks(readFileSync(path.join(stateDir, 'node.pem'), 'utf8'));
  const key = blocks.find((b) => b.label.endsWith('PRIVATE KEY'))!;
  const certs = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => toPem('CERTIFICATE', b.der));
  return { keyPem: toPem(key.label, key.der), certChainPem: certs.join(''), serialHex: parseCertificatePem(certs[0]).serialHex };
}

async function deploy(url: string, id: string, sa: string): Promise<void> {
  const res = await fetch(`${url}/v2/apps`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id, cmd: 'sleep 1000', instances: 1, labels: { 'istio.io/service-account': sa } }),
  });
  assert.equal(res.status, 201);
}

describe('citadel node evict with a real agent', () => {
  let sim: MarathonSimulator;
  let marathon: string;
  let dir: string;
  let store: string;
  let grpcPort: number;
  let server: CitadelServerProcess;
  let agent: CitadelAgentProcess;
  let root: string;
  const certsDir = () => path.join(dir, 'certs');
  const stateDir = () => path.join(certsDir(), '.citadel-agent');
  const tokenFile = () => path.join(dir, 'join-token');

  const auditFile = () => path.join(dir, 'audit.log');
  const startServer = () => startCitadelServer(['--marathon', marathon, '--store', store, '--grpc-port', String(grpcPort), '--log-level', 'debug', '--audit-log', auditFile()]);
  const startAgent = () =>
    startCitadelAgent([
      '--ca-address', `127.0.0.1:${grpcPort}`, '--ca-root', path.join(dir, 'data', 'ca', 'istio-ca-secret', 'ca-cert.pem'),
      '--join-token-file', tokenFile(), '--host', 'agent-1', '--certs-dir', certsDir(), '--log-level', 'debug',
    ]);
  /** The audit log's refusals of agent-1's secret feed. */
  const feedRefusals = () =>
    readFileSync(auditFile(), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => parseAuditLine(l))
      .filter((r) => r.event === 'refused' && r.api === 'WatchSecrets' && r.node === 'agent-1');
  const newToken = async () => writeFileSync(tokenFile(), (await citadel('token', 'create', '--host', 'agent-1', '--store', store)).trim() + '\n');

  before(async () => {
    sim = new MarathonSimulator({ agents: ['agent-1'] });
    marathon = await sim.listen(0);
    await deploy(marathon, '/shop/cart', 'cart');
    dir = mkdtempSync(path.join(tmpdir(), 'citadel-evict-'));
    store = `file:${path.join(dir, 'data')}`;
    grpcPort = await freePort();
    server = await startServer();
    root = readFileSync(path.join(dir, 'data', 'ca', 'istio-ca-secret', 'ca-cert.pem'), 'utf8');
    await newToken();
    agent = startAgent();
  });
  after(async () => {
    await agent?.stop();
    await server?.stop();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a working node: its files, `node list` with its node certificate and last contact; an outage is logged as an outage', async () => {
    await waitFor('the cart bundle', async () => (await bundleProblems(certsDir(), 'shop', 'cart', root)).length === 0, 20_000);
    const cred = nodeCredential(stateDir());
    const listed = await waitFor('agent-1 in node list', async () => {
      const rows = JSON.parse(await citadel('node', 'list', '--store', store, '-o', 'json')) as Array<Record<string, string>>;
      return rows.find((r) => r.host === 'agent-1' && r.lastContact);
    });
    assert.equal(listed.serialNumber, cred.serialHex);
    assert.equal(listed.status, 'active');
    assert.ok(Date.parse(listed.notAfter) > Date.now());
    assert.match(await citadel('node', 'list', '--store', store), new RegExp(`^agent-1 +${cred.serialHex} +\\S+ +\\S+ +active$`, 'm'));

    // The CA goes away and comes back: the agent calls it an outage (a warning), not a refusal.
    const mark = agent.logs().length;
    assert.equal(await server.stop(), 0);
    await agent.waitForLog((l) => /secret feed disconnected \(CA unreachable or restarting\)/.test(l.msg));
    server = await startServer();
    await server.waitForLog((l) => l.msg === 'node connected to the secret feed' && l.host === 'agent-1', 20_000);
    const since = agent.logs().slice(mark);
    assert.ok(since.every((l) => l.level !== 'error'), `errors during an outage: ${JSON.stringify(since.filter((l) => l.level === 'error'))}`);
  });

  it('evict: every call with its node certificate is refused, its feed is closed at once, its unused tokens are revoked', async () => {
    const cred = nodeCredential(stateDir());
    await citadel('token', 'create', '--host', 'agent-1', '--store', store); // an unused token, never given to anyone
    assert.match(await citadel('token', 'list', '--store', store, '--host', 'agent-1'), /^1 unused join token/m);
    const mark = agent.logs().length;
    const out = await citadel('node', 'evict', 'agent-1', '--reason', 'disk image leaked', '--store', store);
    assert.match(out, new RegExp(`^evicted node agent-1 at \\S+: every replica refuses its node certificate \\(serial ${cred.serialHex}, valid until \\S+\\) and closes its feeds$`, 'm'));
    assert.match(out, /^  1 unused join token revoked; to admit it again: citadel token create --host agent-1$/m);
    assert.match(await citadel('token', 'list', '--store', store, '--host', 'agent-1'), /^0 unused join tokens/m);

    // The feed is closed by the server, and the agent says why, as an error naming the eviction.
    const refusal = await agent.waitForLog((l) => l.level === 'error' && /the CA refuses this node's secret feed/.test(l.msg));
    assert.match(String(refusal.refusal), /^PERMISSION_DENIED: node agent-1 was evicted at \S+ \(disk image leaked\): its node certificate is refused/);
    await server.waitForLog((l) => l.msg === 'closed the feed of an evicted node' && l.host === 'agent-1');
    // Its join token was spent when it first attested: it says what a person has to do.
    await agent.waitForLog((l) => l.level === 'error' && /this node is refused by the CA; to admit it again create a join token \(citadel token create --host agent-1\) and restart the agent with it/.test(l.msg));
    assert.ok(agent.logs().slice(mark).every((l) => !/CA unreachable/.test(l.msg)), 'an eviction is not logged as an outage');

    const client = new CaClient({ address: `127.0.0.1:${grpcPort}`, rootCertPem: root, keyPem: cred.keyPem, certChainPem: cred.certChainPem });
    try {
      const err = await client.createCertificate(csrFor(spiffeId(node('agent-1'))).csr).catch((e) => e);
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /node agent-1 was evicted/);
      const feed = client.watchSecrets();
      const feedErr = await new Promise<{ code: number }>((resolve) => feed.on('error', resolve));
      assert.equal(feedErr.code, status.PERMISSION_DENIED);
    } finally {
      client.close();
    }
    const rows = JSON.parse(await citadel('node', 'list', '--store', store, '-o', 'json')) as Array<Record<string, string>>;
    assert.equal(rows.find((r) => r.host === 'agent-1')?.status, 'evicted');
  });

  it('an evicted node gets nothing more: a new workload on its host reaches the store but not the node; its files stay', async () => {
    await deploy(marathon, '/shop/payments', 'payments');
    const reader = await FileStore.open(path.join(dir, 'data'));
    try {
      await waitFor('the controller to write shop/istio.payments', async () => (await reader.getSecret('shop', 'istio.payments')) !== undefined, 10_000);
    } finally {
      await reader.close();
    }
    // A retry of the feed after the secret exists: refused again (the agent logs it at debug level
    // the second time; the CA's audit log records each refusal).
    const after = agent.logs().length;
    const refusedBefore = feedRefusals().length;
    await agent.waitForLog((l) => agent.logs().indexOf(l) >= after && l.level === 'debug' && /the CA refuses this node's secret feed/.test(l.msg), 60_000);
    await waitFor('the retry in the audit log', () => feedRefusals().length > refusedBefore);
    assert.match(feedRefusals().at(-1)!.caller, /^spiffe:\/\/cluster.local\/mesos-agent\/agent-1$/);
    await assert.rejects(fs.stat(path.join(certsDir(), 'shop', 'payments')), 'no directory for the new identity');
    assert.deepEqual(await bundleProblems(certsDir(), 'shop', 'cart', root), [], 'the files it had stay until their certificates expire');
  });

  it('a new join token admits it again: the agent re-attests with it and gets what is placed on its host', async () => {
    await agent.stop();
    await newToken();
    agent = startAgent();
    await agent.waitForLog((l: LogLine) => l.msg === 'node admitted again with the join token', 20_000);
    await waitFor('the payments bundle', async () => (await bundleProblems(certsDir(), 'shop', 'payments', root)).length === 0, 20_000);
    const rows = JSON.parse(await citadel('node', 'list', '--store', store, '-o', 'json')) as Array<Record<string, string>>;
    const row = rows.find((r) => r.host === 'agent-1')!;
    assert.equal(row.status, 'active');
    assert.equal(row.serialNumber, nodeCredential(stateDir()).serialHex);
  });
});
