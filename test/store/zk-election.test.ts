import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderElection, alwaysLeader } from '../../src/store/store';
import { ZkStore } from '../../src/store/zk/zk-store';
import { ZooKeeperServer, startZooKeeper } from '../helpers/zookeeper';
import { waitFor } from '../helpers/wait';
import { freshUrl, open } from './zk-fixtures';

let zk: ZooKeeperServer;
before(async () => {
  zk = await startZooKeeper();
});
after(async () => {
  await zk?.destroy();
});

test('alwaysLeader leads', () => {
  assert.equal(alwaysLeader.isLeader(), true);
});

test('two candidates: exactly one leader; the leader session killed -> the other leads; close resigns', async () => {
  const url = freshUrl(zk);
  const stores: ZkStore[] = await Promise.all([open(url, { sessionTimeoutMs: 4000 }), open(url, { sessionTimeoutMs: 4000 })]);
  const elections: LeaderElection[] = await Promise.all([stores[0].leaderElection('a'), stores[1].leaderElection('b')]);
  const changes: [number, boolean][] = [];
  elections.forEach((e, i) => e.onChange((leader) => changes.push([i, leader])));
  try {
    await waitFor('one leader', () => elections.filter((e) => e.isLeader()).length === 1, 5000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(elections.filter((e) => e.isLeader()).length, 1, 'still exactly one leader');
    const leader = elections.findIndex((e) => e.isLeader());
    const follower = 1 - leader;

    const { sessionId, sessionPassword } = stores[leader].session.credentials();
    await zk.expireSession(sessionId, sessionPassword);
    await waitFor('the follower to take over', () => elections[follower].isLeader(), 10_000);
    assert.ok(changes.some(([i, l]) => i === leader && l === false), 'the old leader was told it lost leadership');
    // The old leader rejoins in its new session, behind the new leader.
    await waitFor('the old leader to reconnect', () => stores[leader].connectionState === 'connected', 10_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(elections[leader].isLeader(), false);
    assert.equal(elections[follower].isLeader(), true);

    await elections[follower].close();
    await waitFor('leadership to pass back after resigning', () => elections[leader].isLeader(), 5000);
    assert.equal(elections[follower].isLeader(), false);
  } finally {
    for (const e of elections) await e.close();
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('while ZooKeeper is down nobody leads; after it returns exactly one does', async () => {
  const url = freshUrl(zk);
  const stores = await Promise.all([open(url, { sessionTimeoutMs: 10_000 }), open(url, { sessionTimeoutMs: 10_000 })]);
  const elections = await Promise.all(stores.map((s, i) => s.leaderElection(`c${i}`)));
  try {
    await waitFor('a leader', () => elections.some((e) => e.isLeader()), 5000);
    await zk.stop();
    await waitFor('everyone to step down', () => elections.every((e) => !e.isLeader()), 5000);
    await zk.start();
    await waitFor('one leader again', () => elections.filter((e) => e.isLeader()).length === 1, 15_000);
  } finally {
    for (const e of elections) await e.close();
    await Promise.all(stores.map((s) => s.close()));
  }
});
