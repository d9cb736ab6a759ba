import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import zookeeper from 'node-zookeeper-client';
import { ConflictError, UserError } from '../../src/common/errors';
import { kekFromBytes } from '../../src/store/kek';
import { StoreEvent, isSealed } from '../../src/store/store';
import { parseZkUrl } from '../../src/store/zk/url';
import { ZooKeeperServer, startZooKeeper } from '../helpers/zookeeper';
import { waitFor } from '../helpers/wait';
import { freshUrl, open, sampleSecret } from './zk-fixtures';

let zk: ZooKeeperServer;
before(async () => {
  zk = await startZooKeeper();
});
after(async () => {
  await zk?.destroy();
});

/** Reads a znode with a separate raw client, to check what is really stored. */
async function rawGet(path: string): Promise<string> {
  const c = zookeeper.createClient(zk.hostPort);
  c.connect();
  try {
    return await new Promise((resolve, reject) => c.getData(path, (err, data) => (err ? reject(err) : resolve(data.toString()))));
  } finally {
    c.close();
  }
}

test('zk:// URLs: servers, chroot and sessionTimeout parsed; bad ones refused in one line', () => {
  assert.deepEqual(parseZkUrl('zk://a:2181,b:2182/citadel/prod?sessionTimeout=15s'), {
    servers: 'a:2181,b:2182',
    chroot: '/citadel/prod',
    sessionTimeoutMs: 15_000,
    url: 'zk://a:2181,b:2182/citadel/prod',
  });
  for (const bad of ['zk://a:2181', 'zk://a:2181/', 'zk://a/citadel', 'file:/x', 'zk://a:2181/c?x=1', 'zk://u:p@a:2181/c']) {
    assert.throws(() => parseZkUrl(bad), (e: Error) => e instanceof UserError && !e.message.includes('\n'), bad);
  }
});

test('CRUD with compare-and-set on znode versions', async () => {
  const store = await open(freshUrl(zk));
  try {
    const s = sampleSecret('prod', 'payments');
    assert.equal(await store.getSecret('prod', 'istio.payments'), undefined);
    const v0 = await store.putSecret(s, null);
    assert.equal(v0, 0);
    await assert.rejects(store.putSecret(s, null), ConflictError, 'create-only must fail when it exists');
    const got = await store.getSecret('prod', 'istio.payments');
    assert.deepEqual(got, { ...s, version: 0 });

    const s2 = sampleSecret('prod', 'payments');
    const v1 = await store.putSecret(s2, v0);
    assert.equal(v1, 1);
    await assert.rejects(store.putSecret(sampleSecret('prod', 'payments'), v0), ConflictError, 'stale version must fail');
    assert.equal((await store.getSecret('prod', 'istio.payments'))?.certChainPem, s2.certChainPem, 'a failed CAS wrote nothing');
    assert.equal(await store.putSecret(sampleSecret('prod', 'payments')), 2, 'unconditional write');
    assert.equal(await store.putSecret(sampleSecret('dev', 'default')), 0, 'unconditional create');

    await assert.rejects(store.deleteSecret('prod', 'istio.payments', 1), ConflictError);
    assert.ok(await store.getSecret('prod', 'istio.payments'));
    assert.equal(await store.deleteSecret('prod', 'istio.payments', 2), true);
    assert.equal(await store.deleteSecret('prod', 'istio.payments'), false);
    await assert.rejects(store.putSecret(sampleSecret('prod', 'payments'), 2), ConflictError, 'CAS on a deleted secret');
    assert.deepEqual((await store.listSecrets()).map((x) => `${x.namespace}/${x.name}`), ['dev/istio.default']);
    assert.deepEqual(await store.listSecrets('prod'), []);
    assert.throws(() => store.secretPath('../x', 'istio.a'));
  } finally {
    await store.close();
  }
});

test('two writers racing with the same version: exactly one wins', async () => {
  const url = freshUrl(zk);
  const [a, b] = await Promise.all([open(url), open(url)]);
  try {
    const v = await a.putSecret(sampleSecret('prod', 'api'), null);
    const results = await Promise.allSettled([a.putSecret(sampleSecret('prod', 'api'), v), b.putSecret(sampleSecret('prod', 'api'), v)]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(rejected.reason instanceof ConflictError);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('watch() reports puts and deletes by other processes, including new namespaces', async () => {
  const url = freshUrl(zk);
  const writer = await open(url);
  const watcher = await open(url);
  const events: StoreEvent[] = [];
  try {
    await writer.putSecret(sampleSecret('prod', 'existing'));
    const stop = watcher.watch((e) => events.push(e));
    await watcher.watchesSettled();
    assert.deepEqual(events, [], 'existing secrets are not reported as changes');

    await writer.putSecret(sampleSecret('prod', 'existing'));
    await waitFor('put of an existing secret', () => events.length >= 1, 5000);
    await writer.putSecret(sampleSecret('newns', 'web'), null);
    await waitFor('put in a new namespace', () => events.length >= 2, 5000);
    await writer.putSecret(sampleSecret('newns', 'web'));
    await waitFor('second change (watch re-armed after firing)', () => events.length >= 3, 5000);
    await writer.deleteSecret('prod', 'istio.existing');
    await waitFor('delete', () => events.length >= 4, 5000);
    assert.deepEqual(events, [
      { type: 'put', namespace: 'prod', name: 'istio.existing' },
      { type: 'put', namespace: 'newns', name: 'istio.web' },
      { type: 'put', namespace: 'newns', name: 'istio.web' },
      { type: 'delete', namespace: 'prod', name: 'istio.existing' },
    ]);
    stop();
    await writer.putSecret(sampleSecret('newns', 'web'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(events.length, 4, 'no events after unsubscribe');
  } finally {
    await Promise.all([writer.close(), watcher.close()]);
  }
});

test('two replicas starting at the same moment end up with ONE CA root', async () => {
  for (let round = 0; round < 5; round++) {
    const url = freshUrl(zk);
    const [a, b] = await Promise.all([open(url), open(url)]);
    try {
      const candA = { caCertPem: `cert-A-${round}`, caKeyPem: `key-A-${round}` };
      const candB = { caCertPem: `cert-B-${round}`, caKeyPem: `key-B-${round}` };
      const [ra, rb] = await Promise.all([a.createCaSecretIfAbsent(candA), b.createCaSecretIfAbsent(candB)]);
      assert.deepEqual(ra, rb, 'both replicas use the same root');
      assert.ok([candA.caCertPem, candB.caCertPem].includes(ra.caCertPem));
      assert.deepEqual(await a.getCaSecret(), ra);
      assert.deepEqual(await b.createCaSecretIfAbsent({ caCertPem: 'late', caKeyPem: 'late' }), ra, 'a later candidate never wins');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }
});

test('a join token is consumed exactly once, even by racing consumers', async () => {
  const url = freshUrl(zk);
  const stores = await Promise.all([open(url), open(url), open(url)]);
  try {
    const hash = createHash('sha256').update(randomBytes(16)).digest('hex');
    const record = { hash, host: 'agent-1.example', expiresAt: '2030-01-01T00:00:00.000Z', createdAt: new Date().toISOString() };
    await stores[0].putJoinToken(record);
    await assert.rejects(stores[0].putJoinToken(record), ConflictError);
    const results = await Promise.all(stores.flatMap((s) => [s.consumeJoinToken(hash), s.consumeJoinToken(hash)]));
    assert.deepEqual(results.filter((r) => r !== undefined), [record]);
    assert.equal(await stores[1].consumeJoinToken(hash), undefined);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('with a KEK, private keys are sealed in ZooKeeper; the wrong KEK or none is refused clearly', async () => {
  const url = freshUrl(zk);
  const kek = kekFromBytes(randomBytes(32));
  const store = await open(url, { kek });
  try {
    const s = sampleSecret('prod', 'db');
    await store.putSecret(s);
    await store.createCaSecretIfAbsent({ caCertPem: 'ca-cert', caKeyPem: s.keyPem });
    const raw = JSON.parse(await rawGet(`${parseZkUrl(url).chroot}/secrets/prod/istio.db`));
    assert.ok(isSealed(raw.keyPem) && !raw.keyPem.includes('PRIVATE KEY'), 'key at rest is sealed');
    assert.equal(raw.certChainPem, s.certChainPem, 'certificates stay readable');
    const rawCa = JSON.parse(await rawGet(`${parseZkUrl(url).chroot}/ca/istio-ca-secret`));
    assert.ok(isSealed(rawCa.caKeyPem));
    assert.equal((await store.getSecret('prod', 'istio.db'))?.keyPem, s.keyPem, 'round trip');
    assert.equal((await store.getCaSecret())?.caKeyPem, s.keyPem);

    const other = kekFromBytes(randomBytes(32));
    const wrong = await open(url, { kek: other });
    const none = await open(url);
    try {
      await assert.rejects(wrong.getSecret('prod', 'istio.db'), (e: Error) => e instanceof UserError && e.message.includes(kek.keyId) && e.message.includes(other.keyId));
      await assert.rejects(wrong.listSecrets(), UserError);
      await assert.rejects(none.getCaSecret(), /sealed private key; pass the --kek-file/);
    } finally {
      await Promise.all([wrong.close(), none.close()]);
    }
  } finally {
    await store.close();
  }
});

test('listSecrets reads 3,000 secrets quickly (pipelined reads)', async () => {
  const store = await open(freshUrl(zk));
  try {
    const all = Array.from({ length: 3000 }, (_, i) => sampleSecret(`ns${i % 30}`, `sa${i}`));
    for (let i = 0; i < all.length; i += 500) await Promise.all(all.slice(i, i + 500).map((s) => store.putSecret(s, null)));
    const t0 = performance.now();
    const listed = await store.listSecrets();
    const ms = performance.now() - t0;
    assert.equal(listed.length, 3000);
    assert.equal((await store.listSecrets('ns7')).length, 100);
    console.log(`# listSecrets of 3000 secrets: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `listSecrets took ${ms} ms`);
  } finally {
    await store.close();
  }
});

test('opening an unreachable ZooKeeper fails with one clear line', async () => {
  await assert.rejects(
    open('zk://127.0.0.1:1/citadel', { connectTimeoutMs: 1000 }),
    (e: Error) => e instanceof UserError && /cannot reach ZooKeeper at 127\.0\.0\.1:1/.test(e.message),
  );
});

test('many secrets of one new namespace written at once; a namespace znode removed by hand is made again', async () => {
  const url = freshUrl(zk);
  const store = await open(url);
  try {
    const versions = await Promise.all(Array.from({ length: 20 }, (_, i) => store.putSecret(sampleSecret('fresh', `sa-${i}`), null)));
    assert.deepEqual(versions, Array(20).fill(0));
    assert.equal((await store.listSecrets('fresh')).length, 20);
    for (let i = 0; i < 20; i++) assert.equal(await store.deleteSecret('fresh', `istio.sa-${i}`), true);
    const chroot = parseZkUrl(url).chroot;
    const c = zookeeper.createClient(zk.hostPort);
    c.connect();
    try {
      await new Promise<void>((resolve, reject) => c.remove(`${chroot}/secrets/fresh`, -1, (err) => (err ? reject(err) : resolve())));
    } finally {
      c.close();
    }
    assert.equal(await store.putSecret(sampleSecret('fresh', 'late'), null), 0);
    assert.deepEqual((await store.listSecrets('fresh')).map((s) => s.name), ['istio.late']);
  } finally {
    await store.close();
  }
});
