/**
 * A node with more identities than one gRPC message holds (3,000 Citadel secrets, over 4.5 MB:
 * gRPC clients refuse messages over 4 MiB). The feed sends its snapshot in parts; the agent applies them
 * as one, so a reconnect rewrites and removes nothing that is current.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodeAgent } from '../../src/agent/node-agent';
import { forEachLimited } from '../../src/common/concurrency';
import { newJoinToken } from '../../src/server/join-token';
import { CaFixture, placeApp, putWorkloadSecret, startCaFixture } from '../server/fixtures';
import { waitFor } from '../helpers/wait';

const IDENTITIES = 3000;

describe('the node agent in file mode on a node with 3,000 identities', () => {
  let f: CaFixture;
  let agent: NodeAgent | undefined;
  const certsDir = mkdtempSync(path.join(tmpdir(), 'citadel-large-node-'));
  const sas = Array.from({ length: IDENTITIES }, (_, i) => `sa-${String(i).padStart(4, '0')}`);
  const count = async () => (await fs.readdir(path.join(certsDir, 'big'))).filter((e) => !e.startsWith('.')).length;

  before(async () => {
    f = await startCaFixture({ rateLimit: { ratePerSecond: 0, burst: 0 } });
    for (const sa of sas) placeApp(f.view, `/big/${sa}`, 'big', sa, ['agent-1']);
    await forEachLimited(sas, 16, (sa) => putWorkloadSecret(f, 'big', sa));
    const bytes = (await f.store.listSecrets('big')).reduce((n, s) => n + s.certChainPem.length + s.keyPem.length + s.rootCertPem.length, 0);
    assert.ok(bytes > 4 * 1024 * 1024, `the node's secrets (${bytes} bytes) are more than one gRPC message holds`);
  });
  after(async () => {
    await agent?.stop();
    await f.close();
    rmSync(certsDir, { recursive: true, force: true });
  });

  it('gets every identity, though the snapshot is larger than a gRPC message', async () => {
    const t = newJoinToken('agent-1', 60_000);
    await f.store.putJoinToken(t.record);
    agent = new NodeAgent({ caAddress: f.address, caRootPem: f.ca.rootCertPem, joinToken: t.token, host: 'agent-1', certsDir });
    await agent.start();
    await waitFor('every identity written', async () => (await count().catch(() => 0)) === IDENTITIES, 60_000);
    for (const sa of [sas[0], sas[IDENTITIES - 1]]) assert.match(await fs.readFile(path.join(certsDir, 'big', sa, 'cert-chain.pem'), 'utf8'), /^-----BEGIN CERTIFICATE-----/);
  });

  it('a restart on the same directory receives the parts again and touches no identity', async () => {
    const data = (sa: string) => fs.readlink(path.join(certsDir, 'big', sa, '..data'));
    const before = await Promise.all(sas.map(data));
    await agent!.stop();
    const stateDir = path.join(certsDir, '.citadel-agent');
    agent = new NodeAgent({ caAddress: f.address, caRootPem: f.ca.rootCertPem, host: 'agent-1', certsDir, stateDir });
    const synced = new Promise<number>((resolve) => agent!.once('synced', (present: unknown[]) => resolve(present.length)));
    await agent.start();
    assert.equal(await synced, IDENTITIES, 'the first update applied is the whole snapshot, not its first part');
    assert.deepEqual(await Promise.all(sas.map(data)), before, 'no bundle removed or written again');
  });
});
