/** Shared flags are parsed in one place: every command refuses the same bad values the same way (exit 2, one line). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { cliPath, tempDir } from '../helpers/pki';

function citadel(...args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('a bad --log-level or --trust-domain is a usage error (exit 2, one line) for the agent as for the server', () => {
  const dir = tempDir();
  const root = path.join(dir, 'root.pem');
  writeFileSync(root, 'not used');
  const agent = ['agent', '--ca-address', '127.0.0.1:1', '--ca-root', root, '--host', 'h1', '--certs-dir', path.join(dir, 'certs')];
  const server = ['server', '--store', `file:${dir}/data`, '--marathon', 'http://127.0.0.1:1'];
  for (const base of [agent, server]) {
    const level = citadel(...base, '--log-level', 'bogus');
    assert.equal(level.code, 2, `${base[0]} --log-level bogus: ${level.err}`);
    assert.match(level.err, /^citadel: option '--log-level <level>' argument 'bogus' is invalid/);
    const td = citadel(...base, '--trust-domain', 'Bad_Domain');
    assert.equal(td.code, 2, `${base[0]} --trust-domain Bad_Domain: ${td.err}`);
    assert.equal(td.err.trim().split('\n').length, 1, td.err);
    assert.match(td.err, /^citadel: --trust-domain: trust domain "Bad_Domain" must be lowercase letters, digits, dots and dashes/);
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
