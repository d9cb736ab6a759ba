/**
 * One writer per file store: `citadel server` holds an flock(2) on <dir>/citadel.lock; a second
 * writer refuses to start in one line naming the holder's pid; read-only commands work beside
 * it; a SIGKILLed holder never blocks the next start. Also without the native addon (the lock is
 * then held by a flock(1) child), and across the two.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { FileStore } from '../../src/store/file-store';
import { startCitadelServer } from '../helpers/citadel-server';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');

/** Runs the CLI; resolves with its exit code and output whatever the code. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('one writer per file store', () => {
  let sim: MarathonSimulator;
  let marathon: string;
  let dir: string;
  before(async () => {
    sim = new MarathonSimulator({ agents: ['agent-1'] });
    marathon = await sim.listen(0);
    sim.state.createApp({ id: '/shop/cart', cmd: 'sleep 1000', instances: 1, labels: { 'istio.io/service-account': 'cart' } });
    dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-lock-'));
  });
  after(async () => {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [holderEnv, otherEnv, label] of [
    [{}, {}, 'with the native addon'],
    [{ CITADEL_NO_NATIVE: '1' }, {}, 'a holder without the native addon (flock(1)) against one with it'],
    [{}, { CITADEL_NO_NATIVE: '1' }, 'a holder with the native addon against one without it'],
  ] as const) {
    it(`a second server refuses to start, readers work beside the first, a killed holder blocks nothing: ${label}`, async () => {
      const store = `file:${path.join(dir, label.replace(/\W+/g, '-'))}`;
      const first = await startCitadelServer(['--marathon', marathon, '--store', store], { env: holderEnv });
      try {
        const second = await cli(['server', '--marathon', marathon, '--store', store, '--monitoring-port', '0', '--grpc-port', '0'], otherEnv);
        assert.equal(second.code, 2, second.stderr);
        const lines = second.stderr.trim().split('\n').filter((l) => l.startsWith('citadel:'));
        assert.equal(lines.length, 1, second.stderr);
        assert.match(lines[0], new RegExp(`is in use by another citadel process \\(pid ${first.child.pid}, holding .*citadel\\.lock\\); stop it first`));
        // Other writers of secrets are refused too.
        const kek = path.join(dir, `kek-${randomBytes(4).toString('hex')}`);
        writeFileSync(kek, randomBytes(32));
        const rekey = await cli(['store', 'rekey', '--store', store, '--new-kek', kek], otherEnv);
        assert.equal(rekey.code, 2);
        assert.match(rekey.stderr, new RegExp(`pid ${first.child.pid}`));
        // Readers and the small atomic writes take no lock.
        const list = await cli(['store', 'list', '--store', store], otherEnv);
        assert.equal(list.code, 0, list.stderr);
        assert.match(list.stdout, /shop\/istio.cart/);
        const get = await cli(['store', 'get', 'shop', 'cart', '--store', store], otherEnv);
        assert.equal(get.code, 0, get.stderr);
        const token = await cli(['token', 'create', '--host', 'agent-1', '--store', store], otherEnv);
        assert.equal(token.code, 0, token.stderr);

        // SIGKILL: no chance to clean up; the kernel drops the lock with the process.
        assert.equal(await first.stop('SIGKILL'), null);
        const next = await startCitadelServer(['--marathon', marathon, '--store', store], { env: otherEnv });
        assert.equal(await next.stop(), 0);
      } finally {
        await first.stop('SIGKILL');
      }
    });
  }

  it('in one process: an exclusive open takes the lock, a plain open does not, close releases it', async () => {
    const d = path.join(dir, 'in-process');
    const writer = await FileStore.open(d, { exclusive: true });
    try {
      await assert.rejects(FileStore.open(d, { exclusive: true }), /is in use by another citadel process \(pid \d+/);
      const reader = await FileStore.open(d);
      await reader.close();
    } finally {
      await writer.close();
    }
    const again = await FileStore.open(d, { exclusive: true });
    await again.close();
  });
});
