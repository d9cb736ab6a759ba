/** The agent's refusals name their cause first: a --ca-root the CA does not chain to, an expired join token. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createSelfSignedRoot } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { newJoinToken } from '../../src/server/join-token';
import { cliPath, tempDir } from '../helpers/pki';
import { CaFixture, placeApp, putWorkloadSecret, startCaFixture } from '../server/fixtures';
import { startCitadelAgent } from '../helpers/citadel-agent';

/** Runs the CLI without blocking this process's event loop (the CA runs in it). */
const citadel = (...args: string[]) =>
  new Promise<{ code: number; err: string }>((resolve) =>
    execFile(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000 }, (e, _out, err) => resolve({ code: e ? (e as { code?: number }).code ?? 1 : 0, err })),
  );

describe('agent errors, cause first', () => {
  let f: CaFixture;
  const dir = tempDir();
  before(async () => {
    f = await startCaFixture();
  });
  after(() => f.close());

  const agent = (root: string, token: string, host: string) => citadel('agent', '--monitoring-port', '0', '--ca-address', f.address, '--ca-root', root, '--join-token', token, '--host', host, '--certs-dir', path.join(dir, host));

  it('a --ca-root the CA does not chain to: exit 2, both roots named, no endless retry', async () => {
    const wrong = path.join(dir, 'wrong-root.pem');
    const other = createSelfSignedRoot(DEFAULT_CA_CONFIG).caCertPem;
    writeFileSync(wrong, other);
    const t = newJoinToken('h1', 60_000);
    await f.store.putJoinToken(t.record);
    const r = await agent(wrong, t.token, 'h1');
    assert.equal(r.code, 2, r.err);
    const line = r.err.trim().split('\n').pop()!;
    assert.match(line, /^citadel: the CA at 127\.0\.0\.1:\d+ presents a certificate that does not chain to --ca-root/);
    assert.ok(line.includes(new X509Certificate(f.ca.rootCertPem).fingerprint256), 'names the root the CA chains to');
    assert.ok(line.includes(new X509Certificate(other).fingerprint256), 'names the root it was given');
  });

  it('an expired join token says expired', async () => {
    const root = path.join(dir, 'root.pem');
    writeFileSync(root, f.ca.rootCertPem);
    const t = newJoinToken('h2', 1, new Date(Date.now() - 1000));
    await f.store.putJoinToken(t.record);
    const r = await agent(root, t.token, 'h2');
    assert.equal(r.code, 2, r.err);
    assert.match(r.err.trim().split('\n').pop()!, /^citadel: node attestation refused: the join token expired at \d{4}-\d\d-\d\dT/);
  });

  it('a --ca-server-name the CA certificate lacks says so, not "another root"', async () => {
    const root = path.join(dir, 'root.pem');
    writeFileSync(root, f.ca.rootCertPem);
    const t = newJoinToken('h3', 60_000);
    await f.store.putJoinToken(t.record);
    const r = await citadel('agent', '--monitoring-port', '0', '--ca-address', f.address, '--ca-root', root, '--join-token', t.token, '--host', 'h3', '--certs-dir', path.join(dir, 'h3'), '--ca-server-name', 'no-such-name');
    assert.equal(r.code, 2, r.err);
    const line = r.err.trim().split('\n').pop()!;
    assert.match(line, /^citadel: the CA at 127\.0\.0\.1:\d+ presents a certificate without the name no-such-name \(--ca-server-name\); it chains to --ca-root/);
    assert.doesNotMatch(line, /give the agent the CA's own root/);
  });
});

describe('a running agent whose CA comes back with another root', () => {
  it('logs the cause (the certificate does not chain to --ca-root, both fingerprints) as an error, not an outage', async () => {
    const dir = tempDir();
    const first = await startCaFixture();
    placeApp(first.view, '/shop/web', 'shop', 'web', ['h4']);
    await putWorkloadSecret(first, 'shop', 'web');
    const root = path.join(dir, 'root.pem');
    writeFileSync(root, first.ca.rootCertPem);
    const t = newJoinToken('h4', 60_000);
    await first.store.putJoinToken(t.record);
    const port = Number(first.address.split(':')[1]);
    const agent = startCitadelAgent(['--ca-address', first.address, '--ca-root', root, '--join-token', t.token, '--host', 'h4', '--certs-dir', path.join(dir, 'certs')]);
    let second: CaFixture | undefined;
    try {
      await agent.waitForLog((l) => l.msg === 'agent running', 20_000);
      await first.close();
      second = await startCaFixture({ port }); // a new store: a new self-signed root on the same address
      const line = await agent.waitForLog((l) => l.level === 'error' && /secret feed: the CA at/.test(l.msg), 30_000);
      assert.match(line.msg, /presents a certificate that does not chain to --ca-root/);
      assert.ok(line.msg.includes(new X509Certificate(second.ca.rootCertPem).fingerprint256), 'names the root the CA chains to now');
      assert.ok(line.msg.includes(new X509Certificate(first.ca.rootCertPem).fingerprint256), 'and the one --ca-root holds');
    } finally {
      await agent.stop();
      await second?.close();
    }
  });
});
