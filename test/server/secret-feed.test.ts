import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SecretsUpdate } from '../../src/api/ca-api';
import { CaFixture, clientFor, credentialFor, node, placeApp, putWorkloadSecret, removeApp, startCaFixture } from './fixtures';

/** Collects a node's feed and waits for conditions on it. */
function watch(f: CaFixture, host: string) {
  const client = clientFor(f, credentialFor(f.ca, node(host)));
  const updates: SecretsUpdate[] = [];
  const waiters: Array<() => void> = [];
  const stream = client.watchSecrets();
  stream.on('data', (u: SecretsUpdate) => {
    updates.push(u);
    for (const w of waiters.splice(0)) w();
  });
  stream.on('error', () => undefined);
  const next = (timeoutMs = 1000) =>
    new Promise<SecretsUpdate>((resolve, reject) => {
      const seen = updates.length;
      const t = setTimeout(() => reject(new Error(`no update within ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        if (updates.length > seen) {
          clearTimeout(t);
          resolve(updates[seen]);
        } else waiters.push(check);
      };
      check();
    });
  return { updates, next, close: () => { stream.cancel(); client.close(); } };
}

describe('the node secret feed (citadel.v1.NodeService/WatchSecrets)', () => {
  let f: CaFixture;
  before(async () => {
    f = await startCaFixture();
    await putWorkloadSecret(f, 'shop', 'cart');
    await putWorkloadSecret(f, 'shop', 'payments');
    placeApp(f.view, '/shop/cart', 'shop', 'cart', ['node-a', 'node-b']);
    placeApp(f.view, '/shop/payments', 'shop', 'payments', ['node-b']);
  });
  after(() => f.close());

  it('feeds each node exactly what Marathon places on it, and pushes changes within a second', async () => {
    const a = watch(f, 'node-a');
    const b = watch(f, 'node-b');
    try {
      const first = await a.next();
      assert.equal(first.snapshot, true);
      assert.deepEqual(first.secrets.map((s) => `${s.namespace}/${s.serviceAccount}`), ['shop/cart']);
      const firstB = await b.next();
      assert.deepEqual(firstB.secrets.map((s) => `${s.namespace}/${s.serviceAccount}`).sort(), ['shop/cart', 'shop/payments']);

      // A task of payments lands on node-a: pushed to node-a only.
      placeApp(f.view, '/shop/payments', 'shop', 'payments', ['node-b', 'node-a']);
      const placed = await a.next();
      assert.deepEqual(placed.secrets.map((s) => s.serviceAccount), ['payments']);
      assert.equal(placed.snapshot, false);

      // The secret rotates: pushed to both nodes that run it.
      const before = firstB.secrets.find((s) => s.serviceAccount === 'payments')!.version;
      await putWorkloadSecret(f, 'shop', 'payments');
      const [ra, rb] = await Promise.all([a.next(), b.next()]);
      assert.deepEqual([ra.secrets[0].serviceAccount, rb.secrets[0].serviceAccount], ['payments', 'payments']);
      assert.notEqual(rb.secrets[0].version, before);

      // The task leaves node-a: node-a is told to remove it, and gets no more of it.
      placeApp(f.view, '/shop/payments', 'shop', 'payments', ['node-b']);
      const removed = await a.next();
      assert.deepEqual(removed.removed, [{ namespace: 'shop', serviceAccount: 'payments' }]);
      await putWorkloadSecret(f, 'shop', 'payments');
      await b.next();
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!a.updates.slice(a.updates.indexOf(removed) + 1).some((u) => u.secrets.some((s) => s.serviceAccount === 'payments')), 'node-a got a secret it is no longer entitled to');

      // The app is deleted: both nodes drop cart.
      removeApp(f.view, '/shop/cart');
      const [da, db] = await Promise.all([a.next(), b.next()]);
      assert.deepEqual(da.removed.map((r) => r.serviceAccount), ['cart']);
      assert.deepEqual(db.removed.map((r) => r.serviceAccount), ['cart']);
    } finally {
      a.close();
      b.close();
    }
  });

  it('a secret written after the placement is delivered when the controller writes it', async () => {
    const c = watch(f, 'node-c');
    try {
      assert.deepEqual((await c.next()).secrets, []);
      placeApp(f.view, '/web/frontend', 'web', 'frontend', ['node-c']);
      await putWorkloadSecret(f, 'web', 'frontend');
      const u = await c.next();
      assert.deepEqual(u.secrets.map((s) => s.serviceAccount), ['frontend']);
    } finally {
      c.close();
    }
  });
});
