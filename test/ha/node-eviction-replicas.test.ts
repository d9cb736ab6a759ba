/**
 * `citadel node evict` on a ZooKeeper store with several replicas, all with --zk-auth-file: every
 * replica refuses the node's certificate from then on (the eviction is in the store and watched),
 * the feed it has open on another replica is closed, a replica started later refuses it too, and
 * a node attested with a new token is served by all of them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CaClient } from '../../src/agent/ca-client';
import { spiffeId } from '../../src/pki/identity';
import { CitadelServerProcess, startCitadelServer } from '../helpers/citadel-server';
import { MarathonSimProcess, startMarathonSimProcess } from '../helpers/marathon-sim';
import { startZooKeeper, ZooKeeperServer } from '../helpers/zookeeper';
import { csrFor, node } from '../server/fixtures';
import { digestAuth } from '../../src/store/zk/auth';
import { openZkStore } from '../../src/store/zk/zk-store';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');

describe('node eviction across ZooKeeper replicas', () => {
  let zk: ZooKeeperServer;
  let marathon: MarathonSimProcess;
  let dir: string;
  let authFile: string;
  let url: string;
  const replicas: CitadelServerProcess[] = [];
  let root: string;

  const citadel = async (...args: string[]) => (await run(process.execPath, [CLI, ...args, '--store', url, '--zk-auth-file', authFile])).stdout;
  const startReplica = async () => {
    const r = await startCitadelServer(['--store', url, '--zk-auth-file', authFile, '--marathon', marathon.url], { timeoutMs: 60_000 });
    replicas.push(r);
    return r;
  };
  const client = (r: CitadelServerProcess, cred?: { keyPem: string; certChainPem: string }) =>
    new CaClient({ address: `127.0.0.1:${r.grpcPort}`, rootCertPem: root, keyPem: cred?.keyPem, certChainPem: cred?.certChainPem });

  /** Attests agent-1 with a fresh token at `r`: the node credential. */
  async function attest(r: CitadelServerProcess): Promise<{ keyPem: string; certChainPem: string }> {
    const token = (await citadel('token', 'create', '--host', 'agent-1')).trim();
    const { csr, keyPem } = csrFor(spiffeId(node('agent-1')));
    const c = client(r);
    try {
      const chain = await c.attestNode(token, 'agent-1', csr);
      return { keyPem, certChainPem: chain[0] };
    } finally {
      c.close();
    }
  }

  const renewCode = async (r: CitadelServerProcess, cred: { keyPem: string; certChainPem: string }) => {
    const c = client(r, cred);
    try {
      return await c.createCertificate(csrFor(spiffeId(node('agent-1'))).csr).then(
        () => ({ code: status.OK, details: '' }),
        (e: { code: number; details: string }) => e,
      );
    } finally {
      c.close();
    }
  };

  before(async () => {
    zk = await startZooKeeper();
    marathon = await startMarathonSimProcess(['--agents', 'agent-1']);
    dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-evict-ha-'));
    authFile = path.join(dir, 'zk-auth');
    writeFileSync(authFile, 'citadel:replica-secret\n', { mode: 0o600 });
    url = `${zk.url('/citadel-evict')}?sessionTimeout=4s`;
    await startReplica();
    await startReplica();
    const s = await openZkStore(url, { auth: digestAuth('citadel:replica-secret', 'test') });
    root = (await s.getCaSecret())!.caCertPem;
    await s.close();
  });
  after(async () => {
    for (const r of replicas) await r.stop();
    await marathon?.stop();
    await zk?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every replica refuses an evicted node, closes its feed, and admits it again only with a new token', async () => {
    const [r1, r2] = replicas;
    const cred = await attest(r1);
    assert.equal((await renewCode(r2, cred)).code, status.OK, 'the other replica serves it before the eviction');
    const feedClient = client(r2, cred);
    try {
      const feed = feedClient.watchSecrets();
      await new Promise<void>((resolve) => feed.once('data', () => resolve())); // the snapshot: the feed is open on r2
      const ended = new Promise<{ code: number; details: string }>((resolve) => feed.on('error', resolve));

      const out = await citadel('node', 'evict', 'agent-1');
      assert.match(out, /^evicted node agent-1 at /);
      const closed = await ended;
      assert.equal(closed.code, status.PERMISSION_DENIED);
      assert.match(closed.details, /^node agent-1 was evicted at /);
    } finally {
      feedClient.close();
    }
    for (const r of [r1, r2]) {
      const e = await renewCode(r, cred);
      assert.equal(e.code, status.PERMISSION_DENIED, `replica on ${r.grpcPort}`);
      assert.match(e.details, /was evicted/);
    }
    // A replica that starts after the eviction reads it before serving.
    const r3 = await startReplica();
    assert.equal((await renewCode(r3, cred)).code, status.PERMISSION_DENIED);

    // A new token (created after the eviction) admits the node again, everywhere.
    const again = await attest(r3);
    for (const r of [r1, r2, r3]) assert.equal((await renewCode(r, again)).code, status.OK, `replica on ${r.grpcPort}`);
    const rows = JSON.parse(await citadel('node', 'list', '-o', 'json')) as Array<{ host: string; status: string }>;
    assert.deepEqual(rows.map((x) => [x.host, x.status]), [['agent-1', 'active']]);
  });
});
