/** `citadel token create | list | revoke` on a file store: a revoked token attests nothing. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CaFixture, clientFor, csrFor, node, spiffeId, startCaFixture } from '../server/fixtures';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args]);
    return { code: 0, ...r };
  } catch (err) {
    return err as { code: number; stdout: string; stderr: string };
  }
}

describe('citadel token', () => {
  let dir: string;
  let f: CaFixture;
  let store: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-token-'));
    f = await startCaFixture({ dir });
    store = `file:${path.join(dir, 'store')}`;
  });
  after(async () => {
    await f.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists unused tokens by id and host; revokes one by id or all of a host; a revoked token is refused', async () => {
    const created = await cli('token', 'create', '--host', 'agent-1', '--store', store);
    assert.equal(created.code, 0);
    const id = /^join token ([0-9a-f]{12}) for host agent-1, valid once until \S+$/m.exec(created.stderr)?.[1];
    assert.ok(id, created.stderr);
    await cli('token', 'create', '--host', 'agent-2', '--store', store, '--ttl', '1s');
    await cli('token', 'create', '--host', 'agent-2', '--store', store);

    const listed = await cli('token', 'list', '--store', store);
    assert.match(listed.stdout, new RegExp(`^${id}  agent-1 +created \\S+  expires \\S+  valid$`, 'm'));
    assert.equal(listed.stdout.split('\n').filter((l) => / agent-2 /.test(l)).length, 2);
    assert.match(listed.stdout, /^3 unused join tokens in file:/m);

    assert.match((await cli('token', 'revoke', id!.slice(0, 8), '--store', store)).stdout, /^revoked 1 join token$/m);
    const anon = clientFor(f);
    try {
      const err = await anon.attestNode(created.stdout.trim(), 'agent-1', csrFor(spiffeId(node('agent-1'))).csr).catch((e) => e);
      assert.equal(err.code, status.UNAUTHENTICATED);
    } finally {
      anon.close();
    }
    assert.match((await cli('token', 'revoke', '--host', 'agent-2', '--store', store)).stdout, /^revoked 2 join tokens of host agent-2$/m);
    assert.match((await cli('token', 'list', '--store', store)).stdout, /^0 unused join tokens/m);
  });

  it('a revoke that names nothing, or too little, is a one-line error and changes nothing', async () => {
    await cli('token', 'create', '--host', 'agent-3', '--store', store);
    for (const [args, message] of [
      [['abc'], /"abc" is not a token id: give at least 8 hex digits/],
      [['00000000'], /no unused join token 00000000…/],
      [[], /name the token to revoke by its id, or give --host/],
    ] as const) {
      const r = await cli('token', 'revoke', ...args, '--store', store);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    assert.match((await cli('token', 'list', '--store', store)).stdout, /^1 unused join token in/m);
  });
});
