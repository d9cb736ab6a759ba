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
import { CaFixture, startCaFixture } from '../server/fixtures';

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
});
