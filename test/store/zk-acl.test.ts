/**
 * ZooKeeper authentication and ACLs against a real ZooKeeper: with --zk-auth-file every znode
 * citadel creates is restricted to that identity, so an anonymous client and a client with other
 * credentials can neither read a secret, the CA key or a token, nor create, change or delete
 * anything under the chroot; the right credentials work as before; wrong ones are one line at
 * start; `citadel store secure` restricts a tree made without them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { UserError } from '../../src/common/errors';
import { newJoinToken } from '../../src/server/join-token';
import { digestAuth, ZkAuth } from '../../src/store/zk/auth';
import { ZkSession } from '../../src/store/zk/session';
import { ZkStore } from '../../src/store/zk/zk-store';
import { startZooKeeper, ZooKeeperServer } from '../helpers/zookeeper';
import { freshUrl, open, sampleSecret } from './zk-fixtures';

const run = promisify(execFile);
const CLI = path.join(__dirname, '../../src/cli/main.js');
const { Exception } = zookeeper;

let zk: ZooKeeperServer;
const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-zk-acl-'));
before(async () => {
  zk = await startZooKeeper();
});
after(async () => {
  await zk?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const citadelAuth = digestAuth('citadel:s3cret-Pa55', 'test');
const otherAuth = digestAuth('mallory:guess', 'test');
const samePasswordOtherUser = digestAuth('citadel:not-the-password', 'test');

/** A raw node-zookeeper-client, anonymous or with digest credentials, as an attacker would use it. */
async function rawClient(auth?: ZkAuth): Promise<zookeeper.Client> {
  const c = zookeeper.createClient(zk.hostPort, { sessionTimeout: 4000, retries: 0 });
  if (auth) c.addAuthInfo(auth.scheme, auth.credentials);
  await new Promise<void>((resolve) => {
    c.once('connected', () => resolve());
    c.connect();
  });
  return c;
}

/** The ZooKeeper error code an operation ended with (0 for success). */
function outcome(op: (cb: (err: Error | zookeeper.Exception | null) => void) => void): Promise<number> {
  return new Promise((resolve) => op((err) => resolve(err ? (err as zookeeper.Exception).getCode() : 0)));
}

/** Every way an outsider could use the store's znodes; each must be NO_AUTH. */
async function attempts(c: zookeeper.Client, chroot: string, tokenHash: string): Promise<Record<string, number>> {
  const ca = `${chroot}/ca/istio-ca-secret`;
  const secret = `${chroot}/secrets/prod/istio.payments`;
  const token = `${chroot}/tokens/${tokenHash}`;
  const forged = newJoinToken('victim-host', 3600_000).record;
  return {
    'read the CA secret': await outcome((cb) => c.getData(ca, cb)),
    'read a workload secret': await outcome((cb) => c.getData(secret, cb)),
    'read a join token': await outcome((cb) => c.getData(token, cb)),
    'list the join tokens': await outcome((cb) => c.getChildren(`${chroot}/tokens`, cb)),
    'list the namespaces': await outcome((cb) => c.getChildren(`${chroot}/secrets`, cb)),
    'list the chroot': await outcome((cb) => c.getChildren(chroot, cb)),
    'read a node record': await outcome((cb) => c.getData(`${chroot}/nodes/agent-1`, cb)),
    'overwrite the CA secret': await outcome((cb) => c.setData(ca, Buffer.from('{}'), -1, cb)),
    'overwrite a workload secret': await outcome((cb) => c.setData(secret, Buffer.from('{}'), -1, cb)),
    'delete the CA secret': await outcome((cb) => c.remove(ca, -1, cb)),
    'delete a join token': await outcome((cb) => c.remove(token, -1, cb)),
    'delete an eviction': await outcome((cb) => c.remove(`${chroot}/evictions/agent-9@1700000000000`, -1, cb)),
    'create a join token of its choosing': await outcome((cb) => c.create(`${chroot}/tokens/${forged.hash}`, Buffer.from(JSON.stringify(forged)), cb)),
    'create a namespace': await outcome((cb) => c.create(`${chroot}/secrets/evil`, Buffer.alloc(0), cb)),
    'create under the chroot': await outcome((cb) => c.create(`${chroot}/policies`, Buffer.alloc(0), cb)),
    'join the election': await outcome((cb) => c.create(`${chroot}/election/c-evil-`, Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, cb)),
    'change the ACL of the chroot': await outcome((cb) => c.setACL(chroot, [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))], -1, cb)),
  };
}

async function seed(store: ZkStore): Promise<string> {
  await store.createCaSecretIfAbsent({ caCertPem: 'root-cert', caKeyPem: '-----BEGIN PRIVATE KEY-----\nroot\n-----END PRIVATE KEY-----\n' });
  await store.putSecret(sampleSecret('prod', 'payments'), null);
  const t = newJoinToken('agent-1', 3600_000);
  await store.putJoinToken(t.record);
  await store.putNodeRecord({ host: 'agent-1', serialNumber: '01', issuedAt: new Date().toISOString(), notAfter: new Date(Date.now() + 3600_000).toISOString(), lastContact: new Date().toISOString() });
  await store.putNodeEviction({ host: 'agent-9', evictedAt: new Date(1_700_000_000_000).toISOString(), reason: '' });
  return t.record.hash;
}

function authFile(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

describe('ZooKeeper store with --zk-auth-file', () => {
  it('every znode is restricted to the credentials: anonymous and other clients get NO_AUTH for everything; the right ones work', async () => {
    const url = freshUrl(zk);
    const chroot = new URL(url.replace('zk://', 'http://')).pathname;
    const store = await open(url, { auth: citadelAuth });
    const election = await store.leaderElection('replica-1');
    try {
      const tokenHash = await seed(store);
      for (const auth of [undefined, otherAuth, samePasswordOtherUser]) {
        const c = await rawClient(auth);
        try {
          const got = await attempts(c, chroot, tokenHash);
          const allowed = Object.entries(got).filter(([, code]) => code !== Exception.NO_AUTH);
          assert.deepEqual(allowed, [], `${auth?.describe ?? 'anonymous'} was not refused for: ${allowed.map(([what, code]) => `${what} (${code})`).join(', ')}`);
        } finally {
          c.close();
        }
      }
      // The election's ephemeral znode carries the ACL too.
      const [candidate] = (await store.session.getChildren(store.electionPath))!;
      assert.equal((await store.session.getAcl(`${store.electionPath}/${candidate}`))!.acl.map((a) => `${a.id.scheme}:${a.id.id}`).join(','), `digest:${citadelAuth.aclId}`);
      // The store with the right credentials reads and changes everything as before.
      assert.equal((await store.getCaSecret())?.caCertPem, 'root-cert');
      assert.equal((await store.listSecrets()).length, 1);
      assert.equal((await store.listJoinTokens()).length, 1);
      assert.ok(await store.consumeJoinToken(tokenHash));
      assert.equal(await store.putSecret(sampleSecret('prod', 'payments'), 0), 1);
      assert.ok(election.isLeader());
      // A second replica with the same credentials, from a fresh session, sees the same.
      const replica = await open(url, { auth: digestAuth('citadel:s3cret-Pa55', 'test') });
      try {
        assert.equal((await replica.getSecret('prod', 'istio.payments'))?.version, 1);
        assert.deepEqual((await replica.listNodeEvictions()).map((e) => e.host), ['agent-9']);
      } finally {
        await replica.close();
      }
    } finally {
      await election.close();
      await store.close();
    }
  });

  it('wrong credentials, or none, on a secured store are a one-line error at open', async () => {
    const url = freshUrl(zk);
    const store = await open(url, { auth: citadelAuth });
    await seed(store);
    await store.close();
    for (const [what, auth] of [['other credentials', otherAuth], ['the right user, a wrong password', samePasswordOtherUser], ['no credentials', undefined]] as const) {
      const err = await open(url, { auth }).then(
        async (s) => {
          await s.close();
          return undefined;
        },
        (e: Error) => e,
      );
      assert.ok(err instanceof UserError, `${what}: ${err}`);
      assert.doesNotMatch(err.message, /\n/, what);
      assert.match(err.message, /not authorized \(NO_AUTH\)/, what);
      assert.match(err.message, auth ? /pass the credentials the store was secured with/ : /pass --zk-auth-file/, what);
      assert.doesNotMatch(err.message, /s3cret|guess|not-the-password/, `${what}: no password in the message`);
    }
  });

  it('credentials ZooKeeper refuses (AUTH_FAILED, answered after the session is up) fail the open in one line', async () => {
    const bogus: ZkAuth = { scheme: 'no-such-scheme', credentials: Buffer.from('x:y'), aclId: 'x', describe: 'scheme no-such-scheme of the test' };
    const err = await ZkSession.open(zk.hostPort, zk.url('/citadel'), { auth: bogus, connectTimeoutMs: 10_000 }).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.ok(err instanceof UserError, String(err));
    assert.match(err.message, /refused the credentials \(AUTH_FAILED, scheme no-such-scheme of the test\)/);
    assert.doesNotMatch(err.message, /\n/);
  });

  it('citadel server with a wrong --zk-auth-file exits 2 with one line; a malformed file too', async () => {
    const url = freshUrl(zk);
    const store = await open(url, { auth: citadelAuth });
    await seed(store);
    await store.close();
    const wrong = authFile('wrong', 'mallory:guess\n');
    const res = await run(process.execPath, [CLI, 'server', '--store', url, '--zk-auth-file', wrong, '--marathon', 'http://127.0.0.1:1', '--monitoring-port', '0', '--grpc-port', '0']).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(res.code, 2, res.stderr);
    const lines = res.stderr.trim().split('\n').filter((l) => l.startsWith('citadel:'));
    assert.equal(lines.length, 1, res.stderr);
    assert.match(lines[0], /not authorized \(NO_AUTH\).*digest user mallory of --zk-auth-file/);
    const malformed = authFile('malformed', 'just-a-password\n');
    const bad = await run(process.execPath, [CLI, 'store', 'list', '--store', url, '--zk-auth-file', malformed]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^citadel: --zk-auth-file .*malformed: expected one line user:password/);
    const right = authFile('right', 'citadel:s3cret-Pa55\n');
    const listed = await run(process.execPath, [CLI, 'store', 'list', '--store', url, '--zk-auth-file', right]);
    assert.match(listed.stdout, /prod\/istio.payments/);
  });

  it('citadel store secure restricts a tree made without credentials; until then a server with credentials refuses it', async () => {
    const url = freshUrl(zk);
    const chroot = new URL(url.replace('zk://', 'http://')).pathname;
    const open1 = await open(url); // as an earlier citadel made it: open ACLs
    const tokenHash = await seed(open1);
    for (let i = 0; i < 300; i++) await open1.putSecret(sampleSecret(`ns${i % 30}`, `sa${i}`), null);
    await open1.close();
    const anon = await rawClient();
    try {
      assert.equal(await outcome((cb) => anon.getData(`${chroot}/ca/istio-ca-secret`, cb)), 0, 'open before securing');
    } finally {
      anon.close();
    }
    const right = authFile('right2', 'citadel:s3cret-Pa55\n');
    // Credentials on an unsecured tree: refused, naming the fix.
    const refused = await open(url, { auth: citadelAuth }).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.ok(refused instanceof UserError);
    assert.match(refused.message, /is not protected: anyone may read, write, create under, delete under, change the ACL of it \(world:anyone\); run `citadel store secure/);

    const secured = await run(process.execPath, [CLI, 'store', 'secure', '--store', url, '--zk-auth-file', right]);
    // chroot, secrets, 31 namespaces (prod, ns0..ns29), 301 secrets, ca and its secret, tokens and a token, election, nodes and a node, evictions and an eviction
    assert.match(secured.stdout, /^secured 343 znodes under .*: only digest user citadel of --zk-auth-file .* may read or change them\n$/);
    assert.equal(secured.stderr, '', 'no progress output when stderr is not a terminal');
    for (const auth of [undefined, otherAuth]) {
      const c = await rawClient(auth);
      try {
        const got = await attempts(c, chroot, tokenHash);
        assert.deepEqual(Object.entries(got).filter(([, code]) => code !== Exception.NO_AUTH), []);
        assert.equal(await outcome((cb) => c.getData(`${chroot}/secrets/ns7/istio.sa7`, cb)), Exception.NO_AUTH, 'a deep znode too');
      } finally {
        c.close();
      }
    }
    const store = await open(url, { auth: citadelAuth });
    try {
      assert.equal((await store.listSecrets()).length, 301);
    } finally {
      await store.close();
    }
    // Running it again is harmless; on a terminal (script(1) gives it one) it shows its progress.
    const command = [process.execPath, CLI, 'store', 'secure', '--store', url, '--zk-auth-file', right].map((a) => `'${a}'`).join(' ');
    const again = await run('script', ['-qec', command, '/dev/null']);
    assert.match(again.stdout, /\rsecuring zk:\/\/\S+: 343\/343 znodes\x1b\[K\r?\n/);
    assert.match(again.stdout, /secured 343 znodes/);
  });
});
