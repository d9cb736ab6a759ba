/**
 * The issuance audit log and the limits flags, on a real `citadel server` process: every
 * certificate issued (by the controller, CreateCertificate, HandleCSR, AttestNode) and every
 * refusal is one JSON line in --audit-log, `citadel audit` shows and filters them, the rate limit
 * is the flags' and its RESOURCE_EXHAUSTED names them, --max-concurrent-streams is what HTTP/2
 * advertises. And the log is written in batches: one fdatasync for many lines.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import fsModule = require('node:fs');
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CertificateAuthority } from '../../src/ca/authority';
import { AuditLog, AuditRecord, parseAuditLine } from '../../src/ca/audit-log';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { silentLogger } from '../../src/common/log';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { parseCertificatePem } from '../../src/pki/certificate';
import { FileStore } from '../../src/store/file-store';
import { CaClient } from '../../src/agent/ca-client';
import { CitadelServerProcess, startCitadelServer } from '../helpers/citadel-server';
import { RawH2Connection, SETTING } from '../helpers/h2-frames';
import { waitFor } from '../helpers/wait';
import { credentialFor, csrFor, node, spiffeId, workload } from './fixtures';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');

const code = (p: Promise<unknown>) => p.then(() => status.OK, (e: { code: number }) => e.code);

describe('citadel server --audit-log, --csr-rate-limit, --csr-burst, --max-concurrent-streams', () => {
  let sim: MarathonSimulator;
  let dir: string;
  let auditFile: string;
  let server: CitadelServerProcess;
  let ca: CertificateAuthority;
  let store: string;
  before(async () => {
    sim = new MarathonSimulator({ agents: ['agent-1'] });
    const marathon = await sim.listen(0);
    sim.state.createApp({ id: '/shop/cart', cmd: 'sleep 1000', instances: 1, labels: { 'istio.io/service-account': 'cart' } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'citadel-audit-'));
    auditFile = path.join(dir, 'audit.log');
    fs.writeFileSync(auditFile, '{"note":"written before the server started"}\n');
    store = `file:${path.join(dir, 'data')}`;
    server = await startCitadelServer(['--marathon', marathon, '--store', store, '--audit-log', auditFile, '--csr-rate-limit', '1', '--csr-burst', '4', '--max-concurrent-streams', '7']);
    const reader = await FileStore.open(path.join(dir, 'data'));
    ca = await CertificateAuthority.open(reader, DEFAULT_CA_CONFIG);
    await reader.close();
  });
  after(async () => {
    await server?.stop();
    await sim.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const client = (cred?: { keyPem: string; certChainPem: string }) =>
    new CaClient({ address: `127.0.0.1:${server.grpcPort}`, rootCertPem: ca.rootCertPem, keyPem: cred?.keyPem, certChainPem: cred?.certChainPem });

  it('records what the controller issued, and appends after what the file held', async () => {
    const records = await waitFor('the controller issuance', () => {
      const rs = readAuditLines(auditFile);
      return rs.filter((r) => r.api === 'secret-controller').length >= 2 ? rs : undefined;
    });
    assert.equal(fs.readFileSync(auditFile, 'utf8').split('\n')[0], '{"note":"written before the server started"}', 'what was there is kept');
    const issued = records.filter((r) => r.api === 'secret-controller' && r.event === 'issued').map((r) => (r as { spiffeId: string }).spiffeId).sort();
    assert.deepEqual(issued, ['spiffe://cluster.local/ns/shop/sa/cart', 'spiffe://cluster.local/ns/shop/sa/default']);
  });

  it('records each certificate issued over gRPC with its serial, and each refusal with its reason; the rate limit names its flags', async () => {
    const me = workload('shop', 'cart');
    const c = client(credentialFor(ca, me));
    const anon = client();
    try {
      const chain = await c.createCertificate(csrFor(spiffeId(me)).csr, 3600);
      const serial = parseCertificatePem(chain[0]).serialHex;
      const legacy = await c.handleCsr(csrFor(spiffeId(me)).csr, 60);
      assert.equal(legacy.isApproved, true);
      const legacySerial = parseCertificatePem(legacy.signedCert.toString()).serialHex;
      assert.equal(await code(c.createCertificate(csrFor(spiffeId(workload('shop', 'admin'))).csr)), status.PERMISSION_DENIED);
      // The burst is 4 and the rate 1/s: at most one more is let through before the bucket is dry.
      const errors: Array<{ code: number; details: string }> = [];
      for (let i = 0; i < 3; i++) await c.createCertificate(csrFor(spiffeId(me)).csr).catch((e) => errors.push(e));
      const limited = errors.find((e) => e.code === status.RESOURCE_EXHAUSTED);
      assert.ok(limited, `no RESOURCE_EXHAUSTED among ${errors.map((e) => e.code)}`);
      assert.equal(limited.details, 'rate limit exceeded for spiffe://cluster.local/ns/shop/sa/cart: 1 requests/s with a burst of 4 per caller (--csr-rate-limit, --csr-burst); slow down and retry with backoff');
      assert.equal(await code(anon.createCertificate(csrFor(spiffeId(me)).csr)), status.UNAUTHENTICATED);

      const tok = await run(process.execPath, [CLI, 'token', 'create', '--host', 'agent-1', '--store', store]);
      const nodeCsr = csrFor(spiffeId(node('agent-1')));
      const nodeChain = await anon.attestNode(tok.stdout.trim(), 'agent-1', nodeCsr.csr);
      const nodeSerial = parseCertificatePem(nodeChain[0]).serialHex;
      assert.equal(await code(anon.attestNode('cjt1.' + 'A'.repeat(43), 'agent-1', csrFor(spiffeId(node('agent-1'))).csr)), status.UNAUTHENTICATED);

      const records = await waitFor('the gRPC entries', () => {
        const rs = readAuditLines(auditFile);
        return rs.filter((r) => r.api !== 'secret-controller').length >= 9 ? rs : undefined;
      });
      const grpc = records.filter((r) => r.api !== 'secret-controller');
      const find = (pred: (r: AuditRecord) => boolean, what: string) => {
        const r = grpc.find(pred);
        assert.ok(r, `no audit line for ${what} in ${JSON.stringify(grpc, null, 1)}`);
        return r;
      };
      const created = find((r) => r.event === 'issued' && r.serial === serial, 'CreateCertificate');
      assert.deepEqual({ ...created, time: undefined, peer: undefined, notAfter: undefined }, {
        time: undefined, peer: undefined, notAfter: undefined,
        event: 'issued', api: 'CreateCertificate', caller: spiffeId(me), spiffeId: spiffeId(me), serial,
      });
      assert.equal(created.peer, '127.0.0.1');
      assert.equal((created as { notAfter: string }).notAfter, parseCertificatePem(chain[0]).notAfter.toISOString(), 'the not-after written in the certificate');
      find((r) => r.event === 'issued' && r.api === 'HandleCSR' && r.serial === legacySerial, 'HandleCSR');
      const denied = find((r) => r.event === 'refused' && r.code === 'PERMISSION_DENIED', 'the refused CSR');
      assert.equal(denied.caller, spiffeId(me));
      assert.match((denied as { reason: string }).reason, /ns\/shop\/sa\/admin/);
      find((r) => r.event === 'refused' && r.code === 'RESOURCE_EXHAUSTED' && r.caller === spiffeId(me), 'the rate-limited call');
      find((r) => r.event === 'refused' && r.code === 'UNAUTHENTICATED' && r.caller === 'unauthenticated' && r.api === 'CreateCertificate', 'the anonymous call');
      const attested = find((r) => r.event === 'issued' && r.api === 'AttestNode', 'the attestation');
      assert.equal(attested.node, 'agent-1');
      assert.equal((attested as { serial: string }).serial, nodeSerial);
      assert.match(attested.caller, /^join-token:[0-9a-f]{12}$/);
      const badToken = find((r) => r.event === 'refused' && r.api === 'AttestNode', 'the refused attestation');
      assert.match((badToken as { reason: string }).reason, /unknown or was already used/);
    } finally {
      c.close();
      anon.close();
    }
  });

  it('citadel audit shows the log, filtered by --identity and --since, as text or JSON; a torn line is skipped with a warning', async () => {
    fs.appendFileSync(auditFile, '{"time":"2024-01-01T00:00:00.000Z","event":"iss'); // as a crash mid-write would leave it
    const all = await run(process.execPath, [CLI, 'audit', '--file', auditFile]);
    assert.match(all.stdout, /issued   CreateCertificate +spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart  serial [0-9a-f]+  until \S+  to spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart from 127.0.0.1/);
    assert.match(all.stdout, /refused  CreateCertificate +PERMISSION_DENIED to spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart from 127.0.0.1: /);
    assert.match(all.stderr, /line 1 is not an audit record/);
    assert.match(all.stderr, /line \d+ is not an audit record \(not JSON\); skipped/);
    const mine = await run(process.execPath, [CLI, 'audit', '--file', auditFile, '--identity', 'spiffe://cluster.local/ns/shop/sa/cart', '-o', 'json']);
    const rows = mine.stdout.trim().split('\n').map((l) => parseAuditLine(l));
    assert.ok(rows.length >= 6, mine.stdout);
    assert.ok(rows.every((r) => r.caller === 'spiffe://cluster.local/ns/shop/sa/cart' || (r.event === 'issued' && r.spiffeId === 'spiffe://cluster.local/ns/shop/sa/cart')));
    assert.ok(rows.some((r) => r.api === 'secret-controller'), 'the secret the controller issued for it is included');
    const none = await run(process.execPath, [CLI, 'audit', '--file', auditFile, '--since', new Date(Date.now() + 3600_000).toISOString(), '-o', 'json']);
    assert.equal(none.stdout, '');
    const recent = await run(process.execPath, [CLI, 'audit', '--file', auditFile, '--since', '1h', '-o', 'json']);
    assert.equal(recent.stdout.trim().split('\n').length, readAuditLines(auditFile).length);
  });

  it('--max-concurrent-streams is what the gRPC server advertises in its HTTP/2 SETTINGS', async () => {
    const c = await RawH2Connection.connect(server.grpcPort, { ca: ca.rootCertPem });
    try {
      assert.equal(c.serverSettings.get(SETTING.MAX_CONCURRENT_STREAMS), 7);
    } finally {
      c.close();
    }
  });

  it('bad limit flags are one-line usage errors', async () => {
    for (const [flag, value] of [['--csr-rate-limit', '-1'], ['--csr-burst', '0'], ['--max-concurrent-streams', 'lots']]) {
      const r = await run(process.execPath, [CLI, 'server', flag, value, '--store', `file:${path.join(dir, 'unused')}`]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`^citadel: ${flag}: "${value}" is not a whole number of at least \\d\\n$`));
    }
  });
});

/** The lines of the log that are audit records. */
function readAuditLines(file: string): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    try {
      out.push(parseAuditLine(l));
    } catch {
      // not a record
    }
  }
  return out;
}

describe('AuditLog', () => {
  it('makes a burst of lines durable with one fdatasync, not one per line; close flushes what is queued', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'citadel-audit-unit-'));
    const file = path.join(dir, 'audit.log');
    const realSync = fsModule.fdatasync;
    let syncs = 0;
    fsModule.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      syncs++;
      return realSync(fd, cb);
    }) as typeof fs.fdatasync;
    try {
      const log = AuditLog.open(file, silentLogger);
      for (let i = 0; i < 500; i++) log.record({ event: 'issued', api: 'CreateCertificate', caller: 'c', spiffeId: `spiffe://cluster.local/ns/n/sa/s${i}`, serial: String(i), notAfter: '2030-01-01T00:00:00.000Z' });
      await log.flush();
      assert.equal(readAuditLines(file).length, 500);
      assert.equal(syncs, 1, 'one batch, one fdatasync');
      log.record({ event: 'refused', api: 'AttestNode', caller: 'join-token:abc', code: 'UNAUTHENTICATED', reason: 'r' });
      await log.close();
      assert.equal(readAuditLines(file).length, 501);
      assert.equal(syncs, 2);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    } finally {
      fsModule.fdatasync = realSync;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an audit log that cannot be opened is a one-line error', () => {
    assert.throws(() => AuditLog.open('/nonexistent-dir/audit.log', silentLogger), /^UserError: --audit-log \/nonexistent-dir\/audit.log: cannot open for appending \(ENOENT\)$/);
  });
});
