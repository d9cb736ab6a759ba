import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreEvent } from '../../src/store/store';
import { ZkConnectionState, ZkUnavailableError } from '../../src/store/zk/session';
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

test('ZooKeeper stopped and restarted: disconnected, calls fail fast and clearly, then recovers with watches re-armed', async () => {
  const url = freshUrl(zk);
  const store = await open(url, { sessionTimeoutMs: 10_000 });
  const states: ZkConnectionState[] = [];
  store.onConnectionState((s) => states.push(s));
  const events: StoreEvent[] = [];
  store.watch((e) => events.push(e));
  try {
    await store.putSecret(sampleSecret('prod', 'api'));
    await store.watchesSettled();

    await zk.stop();
    await waitFor('the store to notice the outage', () => store.connectionState === 'disconnected', 5000);
    const t0 = Date.now();
    await assert.rejects(
      store.getSecret('prod', 'istio.api'),
      (e: Error) => e instanceof ZkUnavailableError && /is disconnected/.test(e.message) && !e.message.includes('\n'),
    );
    await assert.rejects(store.putSecret(sampleSecret('prod', 'api')), ZkUnavailableError);
    assert.ok(Date.now() - t0 < 500, 'calls fail fast while disconnected');

    await new Promise((r) => setTimeout(r, 1000));
    await zk.start();
    await waitFor('reconnection after restart', () => store.connectionState === 'connected', 15_000);
    assert.deepEqual(states.slice(0, 2), ['disconnected', 'connected']);
    await waitFor('a resync event after reconnecting', () => events.some((e) => e.type === 'resync'), 5000);

    // A change by another process after the restart reaches the old watcher: watches are armed again.
    const writer = await open(url);
    try {
      events.length = 0;
      await writer.putSecret(sampleSecret('prod', 'api'));
      await writer.putSecret(sampleSecret('staging', 'api'), null);
      await waitFor('watch events after the restart', () => events.length >= 2, 5000);
      assert.deepEqual(
        events.filter((e) => e.type !== 'resync'),
        [
          { type: 'put', namespace: 'prod', name: 'istio.api' },
          { type: 'put', namespace: 'staging', name: 'istio.api' },
        ],
      );
    } finally {
      await writer.close();
    }
    assert.ok(await store.getSecret('prod', 'istio.api'));
  } finally {
    await store.close();
  }
});

test('session expiry: the store reports it, opens a new session, re-arms watches and reports a resync', async () => {
  const url = freshUrl(zk);
  const store = await open(url, { sessionTimeoutMs: 4000 });
  const writer = await open(url);
  const states: ZkConnectionState[] = [];
  store.onConnectionState((s) => states.push(s));
  const events: StoreEvent[] = [];
  store.watch((e) => events.push(e));
  try {
    await writer.putSecret(sampleSecret('prod', 'api'));
    await store.watchesSettled();
    const before = store.session.credentials().sessionId.toString('hex');

    await zk.expireSession(store.session.credentials().sessionId, store.session.credentials().sessionPassword);
    await waitFor('the store to see its session expire', () => states.includes('expired'), 10_000);
    await waitFor('a new session', () => store.connectionState === 'connected', 10_000);
    assert.notEqual(store.session.credentials().sessionId.toString('hex'), before, 'a different session');
    await waitFor('resync after the new session', () => events.some((e) => e.type === 'resync'), 5000);
    await store.watchesSettled();

    events.length = 0;
    await writer.putSecret(sampleSecret('prod', 'api'));
    await writer.deleteSecret('prod', 'istio.api');
    await waitFor('watch events in the new session', () => events.length >= 2, 5000);
    assert.deepEqual(events, [
      { type: 'put', namespace: 'prod', name: 'istio.api' },
      { type: 'delete', namespace: 'prod', name: 'istio.api' },
    ]);
    assert.equal(await store.getSecret('prod', 'istio.api'), undefined, 'calls work in the new session');
  } finally {
    await Promise.all([store.close(), writer.close()]);
  }
});
