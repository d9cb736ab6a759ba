/**
 * The policy set in both stores (file: and a real ZooKeeper): one versioned value, written by
 * compare-and-set, merged by kind/namespace/name, watched by other replicas.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { ConflictError, UserError } from '../../src/common/errors';
import { parsePolicyText, type CanonicalPolicy, type PolicyDocument } from '../../src/mesh/policy';
import { openStore } from '../../src/store';
import { FileStore } from '../../src/store/file-store';
import { applyPolicies, deletePolicies, readPolicies, refOf } from '../../src/store/policy-apply';
import type { PolicyEvent, Store } from '../../src/store/store';
import { ZkStore } from '../../src/store/zk/zk-store';
import { cliPath, tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { startZooKeeper, type ZooKeeperServer } from '../helpers/zookeeper';
import { freshUrl, open as openZk } from './zk-fixtures';

const paYaml = (ns: string, name: string, mode = 'STRICT', extraMeta = '') =>
  `apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n${extraMeta}spec:\n  mtls:\n    mode: ${mode}\n`;
const drYaml = (ns: string, name: string, host: string) =>
  `apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  host: "${host}"\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n`;

function docs(text: string): PolicyDocument[] {
  return [...parsePolicyText(text, 'test.yaml').documents];
}
const pa = (ns: string, name: string, mode = 'STRICT') => docs(paYaml(ns, name, mode))[0];
const dr = (ns: string, name: string, host = '*.marathon.mesos') => docs(drYaml(ns, name, host))[0];
const names = (ds: readonly PolicyDocument[]) => ds.map((d) => `${d.kind}/${refOf(d).namespace ?? ''}/${d.metadata.name}`);
const at = (iso: string) => () => new Date(iso);

function citadel(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

interface Backend {
  readonly name: string;
  /** A URL of an empty store of this kind. */
  freshUrl(): string;
  open(url: string): Promise<Store>;
  /** Everything the store keeps of the policy set, byte for byte (and the znode version). */
  storedBytes(url: string): Promise<string>;
  /** Ends the session of `store` as ZooKeeper would after a partition; undefined where there is none. */
  expire?(store: Store): Promise<void>;
}

let zk: ZooKeeperServer;
before(async () => {
  zk = await startZooKeeper();
});
after(async () => {
  await zk?.destroy();
});

const fileBackend: Backend = {
  name: 'file:',
  freshUrl: () => `file:${tempDir()}/data`,
  open: (url) => openStore(url),
  async storedBytes(url) {
    const dir = path.join(url.slice('file:'.length), 'policies');
    if (!existsSync(dir)) return '';
    return readdirSync(dir)
      .sort()
      .map((name) => `${name}\n${readFileSync(path.join(dir, name), 'utf8')}`)
      .join('\n');
  },
};

const zkBackend: Backend = {
  name: 'zk://',
  freshUrl: () => freshUrl(zk),
  open: (url) => openZk(url),
  async storedBytes(url) {
    const znode = `${new URL(url.replace(/^zk:/, 'http:')).pathname}/policies`;
    const client = zookeeper.createClient(zk.hostPort);
    client.connect();
    try {
      return await new Promise((resolve, reject) =>
        client.getData(znode, (err, data, stat) => {
          if (err instanceof zookeeper.Exception && err.getCode() === zookeeper.Exception.NO_NODE) resolve('absent');
          else if (err) reject(err);
          else resolve(`version ${stat.version}\n${data.toString('utf8')}`);
        }),
      );
    } finally {
      client.close();
    }
  },
  async expire(store) {
    const { sessionId, sessionPassword } = (store as ZkStore).session.credentials();
    await zk.expireSession(sessionId, sessionPassword);
  },
};

for (const backend of [fileBackend, zkBackend]) {
  describe(`the policy set in a ${backend.name} store`, () => {
    async function withStores(n: number, fn: (stores: Store[], url: string) => Promise<void>): Promise<void> {
      const url = backend.freshUrl();
      const stores: Store[] = [];
      try {
        for (let i = 0; i < n; i++) stores.push(await backend.open(url));
        await fn(stores, url);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    }

    it('apply, get, delete: created / unchanged (no write) / configured, each write one version', () =>
      withStores(1, async ([store], url) => {
        assert.deepEqual(await store.getPolicies(), { documents: [], version: 0 });
        const first = await applyPolicies(store, [pa('prod', 'api'), dr('istio-system', 'mesh')], { now: at('2024-05-01T12:00:00Z') });
        assert.deepEqual(first.applied.map((a) => a.outcome), ['created', 'created']);
        assert.equal(first.version, 1);
        const read = await readPolicies(store);
        assert.equal(read.version, 1);
        assert.deepEqual(names(read.documents), ['DestinationRule/istio-system/mesh', 'PeerAuthentication/prod/api'], 'stored sorted by kind, namespace, name');
        assert.deepEqual(read.documents, [first.applied[1].document, first.applied[0].document]);

        const bytes = await backend.storedBytes(url);
        const again = await applyPolicies(store, [pa('prod', 'api')]);
        assert.deepEqual([again.applied[0].outcome, again.version], ['unchanged', 1]);
        assert.equal(await backend.storedBytes(url), bytes, 'an unchanged apply writes nothing');

        const changed = await applyPolicies(store, [pa('prod', 'api', 'PERMISSIVE'), pa('prod', 'web')]);
        assert.deepEqual([changed.applied.map((a) => a.outcome), changed.version], [['configured', 'created'], 2]);
        const gone = await deletePolicies(store, [refOf(pa('prod', 'api'))]);
        assert.equal(gone.version, 3);
        assert.deepEqual(names((await readPolicies(store)).documents), ['DestinationRule/istio-system/mesh', 'PeerAuthentication/prod/web']);

        const before = await backend.storedBytes(url);
        await assert.rejects(deletePolicies(store, [refOf(pa('prod', 'web')), refOf(pa('prod', 'api'))]), (e: Error) => {
          assert.ok(e instanceof UserError);
          assert.match(e.message, /^there is no peerauthentication prod\/api in .*; nothing deleted/);
          return true;
        });
        assert.equal(await backend.storedBytes(url), before, 'a delete naming a missing document deletes nothing');
      }));

    it('compare-and-set: a stale version is a ConflictError and writes nothing; of two racing writers one wins', () =>
      withStores(2, async ([a, b], url) => {
        const one = [{ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'a', namespace: 'prod' }, spec: {} }] as CanonicalPolicy[];
        const two = [{ ...one[0], metadata: { name: 'b', namespace: 'prod' } }] as CanonicalPolicy[];
        assert.equal(await a.putPolicies(one, 0), 1);
        await assert.rejects(b.putPolicies(two, 0), ConflictError, 'version 0 means "not stored yet"');
        await assert.rejects(b.putPolicies(two, 7), ConflictError, 'a version never reached');
        assert.equal(await b.putPolicies(two, 1), 2);
        const bytes = await backend.storedBytes(url);
        await assert.rejects(a.putPolicies(one, 1), ConflictError, 'a version passed');
        assert.equal(await backend.storedBytes(url), bytes);
        assert.deepEqual(await a.getPolicies(), { documents: two, version: 2 });

        const raced = await Promise.allSettled([a.putPolicies(one, 2), b.putPolicies(two, 2)]);
        assert.equal(raced.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one of two writers of one version wins');
        assert.ok((raced.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason instanceof ConflictError);
        assert.equal((await b.getPolicies()).version, 3);
      }));

    it('an apply that loses the compare-and-set re-reads, merges again and keeps the other writer\'s document', () =>
      withStores(2, async ([a, b]) => {
        let interfered = false;
        // The first write of `a` finds that `b` got in between its read and its write.
        const racing: Store = Object.create(a, {
          putPolicies: {
            value: async (documents: readonly CanonicalPolicy[], expected: number) => {
              if (!interfered) {
                interfered = true;
                await applyPolicies(b, [pa('prod', 'from-b')]);
              }
              return a.putPolicies(documents, expected);
            },
          },
        });
        const result = await applyPolicies(racing, [pa('prod', 'from-a')]);
        assert.equal(result.attempts, 2);
        assert.equal(result.version, 2);
        assert.deepEqual(names((await readPolicies(b)).documents), ['PeerAuthentication/prod/from-a', 'PeerAuthentication/prod/from-b']);
      }));

    it('sixteen concurrent applies from two store instances: no document lost, one version per write', () =>
      withStores(2, async ([a, b]) => {
        const applies = Array.from({ length: 16 }, (_, i) => applyPolicies(i % 2 ? a : b, [pa('prod', `app-${i}`)], { attempts: 64 }));
        const results = await Promise.all(applies);
        const read = await readPolicies(a);
        assert.equal(read.documents.length, 16);
        assert.equal(read.version, 16, 'each apply wrote exactly once');
        assert.deepEqual(results.map((r) => r.applied[0].outcome), Array(16).fill('created'));
      }));

    it('concurrent `citadel policy apply` processes: every document arrives', async () => {
      const url = backend.freshUrl();
      const dir = tempDir();
      const files = Array.from({ length: 4 }, (_, i) => {
        const file = path.join(dir, `p${i}.yaml`);
        writeFileSync(file, `${paYaml('prod', `proc-${i}`)}---\n${drYaml('prod', `proc-${i}`, `proc-${i}.marathon.mesos`)}`);
        return file;
      });
      const runs = await Promise.all(files.map((f) => citadel(['policy', 'apply', '-f', f, '--store', url])));
      for (const r of runs) assert.equal(r.code, 0, r.err);
      const store = await backend.open(url);
      try {
        const read = await readPolicies(store);
        assert.equal(read.documents.length, 8);
        assert.equal(read.version, 4);
      } finally {
        await store.close();
      }
    });

    it('a bad file in a directory changes nothing: the stored bytes are the same before and after', async () => {
      const url = backend.freshUrl();
      const dir = tempDir();
      writeFileSync(path.join(dir, 'a.yaml'), paYaml('prod', 'api'));
      assert.equal((await citadel(['policy', 'apply', '-f', dir, '--store', url])).code, 0);
      const bytes = await backend.storedBytes(url);
      assert.match(bytes, /"name":"api"/);
      writeFileSync(path.join(dir, 'a.yaml'), `${paYaml('prod', 'api', 'PERMISSIVE')}---\n${paYaml('prod', 'web')}`);
      writeFileSync(path.join(dir, 'b.yaml'), paYaml('prod', 'db', 'STRICTT'));
      const r = await citadel(['policy', 'apply', '-f', dir, '--store', url]);
      assert.equal(r.code, 2);
      assert.equal(r.out, '');
      assert.match(r.err, /b\.yaml: document 1 \(PeerAuthentication prod\/db\): spec\.mtls\.mode: "STRICTT" is not one of/);
      assert.equal(await backend.storedBytes(url), bytes);
    });

    it('creationTimestamp: stamped on first apply, kept on every later one; one the file brings is kept when new', () =>
      withStores(1, async ([store]) => {
        await applyPolicies(store, [pa('prod', 'api')], { now: at('2024-05-01T12:00:00Z') });
        const later = await applyPolicies(store, [pa('prod', 'api', 'PERMISSIVE'), pa('prod', 'web')], { now: at('2024-05-02T08:30:00Z') });
        assert.deepEqual(later.applied.map((a) => [a.outcome, a.document.metadata.creationTimestamp]), [
          ['configured', '2024-05-01T12:00:00.000Z'],
          ['created', '2024-05-02T08:30:00.000Z'],
        ]);
        const brought = docs(paYaml('prod', 'old', 'STRICT', '  creationTimestamp: "2020-01-01T00:00:00Z"\n'))[0];
        assert.equal((await applyPolicies(store, [brought], { now: at('2024-05-03T00:00:00Z') })).applied[0].document.metadata.creationTimestamp, '2020-01-01T00:00:00Z');
        const rewritten = docs(paYaml('prod', 'old', 'STRICT', '  creationTimestamp: "2023-01-01T00:00:00Z"\n'))[0];
        const kept = await applyPolicies(store, [rewritten]);
        assert.equal(kept.applied[0].outcome, 'unchanged', 'the stored timestamp wins over the file\'s');
        const stored = new Map((await readPolicies(store)).documents.map((d) => [d.metadata.name, d.metadata.creationTimestamp]));
        assert.deepEqual(Object.fromEntries(stored), { api: '2024-05-01T12:00:00.000Z', old: '2020-01-01T00:00:00Z', web: '2024-05-02T08:30:00.000Z' });
      }));

    it('watchPolicies: another replica hears each change; an unsubscribed listener hears nothing more', () =>
      withStores(2, async ([writer, replica]) => {
        const heard: PolicyEvent[] = [];
        const own: PolicyEvent[] = [];
        const stop = replica.watchPolicies((e) => heard.push(e));
        writer.watchPolicies((e) => own.push(e));
        assert.equal((await replica.getPolicies()).version, 0);
        await applyPolicies(writer, [pa('prod', 'api')]);
        await waitFor('the replica hears version 1', () => heard.length >= 1);
        await applyPolicies(writer, [pa('prod', 'api', 'PERMISSIVE')]);
        await waitFor('the replica hears version 2 (the watch was re-armed)', () => heard.length >= 2);
        assert.deepEqual(heard, [
          { type: 'policies', version: 1 },
          { type: 'policies', version: 2 },
        ]);
        await waitFor('the writer hears its own writes', () => own.length >= 2);
        assert.deepEqual(own.map((e) => e.version), [1, 2]);
        stop();
        await applyPolicies(writer, [pa('prod', 'web')]);
        await waitFor('the writer hears version 3', () => own.length >= 3);
        const second: PolicyEvent[] = [];
        replica.watchPolicies((e) => second.push(e));
        await replica.getPolicies();
        await applyPolicies(writer, [pa('prod', 'db')]);
        await waitFor('a new listener hears version 4', () => second.length >= 1);
        assert.deepEqual(second, [{ type: 'policies', version: 4 }]);
        assert.equal(heard.length, 2, 'the unsubscribed listener heard nothing more');
      }));

    it('a set over 900 KB is refused in one line and nothing is written', () =>
      withStores(1, async ([store], url) => {
        await applyPolicies(store, [pa('prod', 'api')]);
        const bytes = await backend.storedBytes(url);
        const big = docs(paYaml('prod', 'big', 'STRICT', `  annotations:\n    note: "${'x'.repeat(950 * 1024)}"\n`));
        await assert.rejects(applyPolicies(store, big), (e: Error) => {
          assert.ok(e instanceof UserError);
          assert.match(e.message, /^the policy set would take 9\d\d KB \(2 documents\); a store keeps at most 900 KB/);
          assert.ok(!e.message.includes('\n'));
          return true;
        });
        assert.equal(await backend.storedBytes(url), bytes);
      }));

    if (backend.expire) {
      it('the watch comes back with a new ZooKeeper session', () =>
        withStores(2, async ([writer, replica]) => {
          const heard: PolicyEvent[] = [];
          replica.watchPolicies((e) => heard.push(e));
          await replica.getPolicies();
          await applyPolicies(writer, [pa('prod', 'api')]);
          await waitFor('version 1', () => heard.length >= 1);
          await backend.expire!(replica);
          await waitFor('the replica reconnects', () => replica.unavailableReason() === undefined && (replica as ZkStore).connectionState === 'connected', 20_000);
          await applyPolicies(writer, [pa('prod', 'web')]);
          await waitFor('version 2 after the new session', () => heard.some((e) => e.version === 2), 10_000);
        }));
    }
  });
}

describe('the file store keeps the set as <dir>/policies/<version>.json', () => {
  it('one file, the newest version; a killed writer\'s temporary file is removed on open; a foreign file is a clear error', async () => {
    const dir = tempDir();
    let store = await FileStore.open(dir);
    await applyPolicies(store, [pa('prod', 'api')]);
    await applyPolicies(store, [pa('prod', 'web')]);
    const policies = path.join(dir, 'policies');
    assert.deepEqual(readdirSync(policies), ['2.json']);
    const stored = JSON.parse(readFileSync(path.join(policies, '2.json'), 'utf8'));
    assert.equal(stored.v, 1);
    assert.deepEqual(stored.documents.map((d: CanonicalPolicy) => d.metadata.name), ['api', 'web']);
    await store.close();

    const leftover = path.join(policies, '.3.json.tmp-2147483646.deadbeefa');
    writeFileSync(leftover, '{"v":1,"documents":[');
    store = await FileStore.open(dir);
    assert.ok(!existsSync(leftover), 'a dead writer\'s temporary file is removed');
    writeFileSync(path.join(policies, '3.json'), 'not json');
    await assert.rejects(store.getPolicies(), /3\.json does not hold JSON/);
    await store.close();
  });

  it('without inotify, the once-a-second listing still tells another process\'s write', async () => {
    const dir = tempDir();
    const writer = await FileStore.open(dir);
    const replica = await FileStore.open(dir);
    const fsModule = require('node:fs') as typeof import('node:fs');
    const realWatch = fsModule.watch;
    fsModule.watch = (() => {
      throw Object.assign(new Error('inotify watch limit reached'), { code: 'ENOSPC' });
    }) as typeof fsModule.watch;
    const heard: PolicyEvent[] = [];
    try {
      replica.watchPolicies((e) => heard.push(e));
    } finally {
      fsModule.watch = realWatch;
    }
    try {
      await applyPolicies(writer, [pa('prod', 'api')]);
      await waitFor('the poll sees version 1', () => heard.length >= 1, 5000);
      assert.deepEqual(heard, [{ type: 'policies', version: 1 }]);
    } finally {
      await Promise.all([writer.close(), replica.close()]);
    }
  });

  it('a store directory from before policies existed gets its policies directory on open', async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'secrets'));
    const store = await FileStore.open(dir);
    assert.deepEqual(await store.getPolicies(), { documents: [], version: 0 });
    await store.close();
  });
});
