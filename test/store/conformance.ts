/**
 * The store conformance suite: the same behaviour asked of every Store implementation (the file
 * store and ZooKeeper), so that `store migrate` between them cannot fail half way and the server
 * behaves alike on either.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConflictError, UserError } from '../../src/common/errors';
import { kekFromBytes } from '../../src/store/kek';
import { SECRET_TYPE, Secret, Store, StoreEvent, isSealed } from '../../src/store/store';
import { waitFor } from '../helpers/wait';

export function sampleSecret(namespace: string, sa: string, serial = randomBytes(8).toString('hex')): Secret {
  return {
    namespace,
    name: `istio.${sa}`,
    certChainPem: `-----BEGIN CERTIFICATE-----\n${serial}\n-----END CERTIFICATE-----\n`,
    keyPem: `-----BEGIN PRIVATE KEY-----\n${randomBytes(32).toString('base64')}\n-----END PRIVATE KEY-----\n`,
    rootCertPem: '-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n',
    metadata: {
      type: SECRET_TYPE,
      serviceAccount: sa,
      spiffeId: `spiffe://cluster.local/ns/${namespace}/sa/${sa}`,
      notBefore: '2024-01-01T00:00:00.000Z',
      notAfter: '2024-01-02T00:00:00.000Z',
      serialNumber: serial,
      updatedAt: new Date().toISOString(),
    },
  };
}

export interface StoreUnderTest {
  /** Opens a store on a fresh, empty location; `again` opens another instance on the same location. */
  open(opts?: { kek?: ReturnType<typeof kekFromBytes> }): Promise<{ store: Store; again(opts?: { kek?: ReturnType<typeof kekFromBytes> }): Promise<Store> }>;
}

export function describeStoreConformance(name: string, sut: StoreUnderTest): void {
  describe(`store conformance: ${name}`, () => {
    const withStore = async (fn: (store: Store, again: (opts?: { kek?: ReturnType<typeof kekFromBytes> }) => Promise<Store>) => Promise<void>, opts?: { kek?: ReturnType<typeof kekFromBytes> }) => {
      const { store, again } = await sut.open(opts);
      try {
        await fn(store, again);
      } finally {
        await store.close();
      }
    };

    it('put, get, list and delete with compare-and-set; a failed CAS writes nothing', () =>
      withStore(async (store) => {
        const s = sampleSecret('prod', 'payments');
        assert.equal(await store.getSecret('prod', 'istio.payments'), undefined);
        const v0 = await store.putSecret(s, null);
        await assert.rejects(store.putSecret(sampleSecret('prod', 'payments'), null), ConflictError, 'create-only when it exists');
        const got = await store.getSecret('prod', 'istio.payments');
        assert.deepEqual(got, { ...s, version: v0 });
        const s2 = sampleSecret('prod', 'payments');
        const v1 = await store.putSecret(s2, v0);
        assert.notEqual(v1, v0);
        await assert.rejects(store.putSecret(sampleSecret('prod', 'payments'), v0), ConflictError, 'a stale version');
        assert.equal((await store.getSecret('prod', 'istio.payments'))!.certChainPem, s2.certChainPem);
        await store.putSecret(sampleSecret('dev', 'default'));
        await store.putSecret(sampleSecret('prod', 'api'));
        assert.deepEqual((await store.listSecrets()).map((x) => `${x.namespace}/${x.name}`), ['dev/istio.default', 'prod/istio.api', 'prod/istio.payments']);
        assert.deepEqual((await store.listSecrets('prod')).map((x) => x.name), ['istio.api', 'istio.payments']);
        await assert.rejects(store.deleteSecret('prod', 'istio.payments', v0), ConflictError);
        assert.equal(await store.deleteSecret('prod', 'istio.payments', v1), true);
        assert.equal(await store.deleteSecret('prod', 'istio.payments'), false);
        await assert.rejects(store.putSecret(sampleSecret('prod', 'payments'), v1), ConflictError, 'CAS on a deleted secret');
      }));

    it('two writes with the same expected version: exactly one wins', () =>
      withStore(async (store) => {
        const v = await store.putSecret(sampleSecret('prod', 'race'), null);
        const results = await Promise.allSettled([store.putSecret(sampleSecret('prod', 'race'), v), store.putSecret(sampleSecret('prod', 'race'), v)]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        assert.ok((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason instanceof ConflictError);
      }));

    it('the same names are refused by every store, and nothing is written', () =>
      withStore(async (store) => {
        for (const [ns, secret] of [['Prod_X', 'istio.api'], ['prod', 'istio.Bad_SA'], ['prod', 'api'], ['../x', 'istio.a'], ['', 'istio.a'], ['prod', 'istio.']]) {
          await assert.rejects(
            store.putSecret({ ...sampleSecret('prod', 'api'), namespace: ns, name: secret }),
            (e: Error) => !e.message.includes('\n') && /namespace|secret name/.test(e.message),
            `${ns}/${secret}`,
          );
        }
        assert.deepEqual(await store.listSecrets(), []);
      }));

    it('the CA secret is created once: the second candidate gets the first', () =>
      withStore(async (store, again) => {
        const a = { caCertPem: 'cert-a', caKeyPem: 'key-a' };
        const b = { caCertPem: 'cert-b', caKeyPem: 'key-b' };
        assert.deepEqual(await store.createCaSecretIfAbsent(a), a);
        const other = await again();
        try {
          assert.deepEqual(await other.createCaSecretIfAbsent(b), a);
          assert.deepEqual(await other.getCaSecret(), a);
        } finally {
          await other.close();
        }
      }));

    it('a join token is consumed once', () =>
      withStore(async (store) => {
        const record = { hash: randomBytes(32).toString('hex'), host: 'agent-1', createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 60_000).toISOString() };
        await store.putJoinToken(record);
        const [x, y] = await Promise.all([store.consumeJoinToken(record.hash), store.consumeJoinToken(record.hash)]);
        assert.deepEqual([x, y].filter(Boolean), [record]);
        assert.equal(await store.consumeJoinToken(record.hash), undefined);
      }));

    it('watch() reports puts and deletes', () =>
      withStore(async (store) => {
        const events: StoreEvent[] = [];
        const stop = store.watch((e) => events.push(e));
        // A store may arm its watches after watch() returns (ZooKeeper does): keep writing until one is seen.
        await waitFor('a put reported', async () => {
          await store.putSecret(sampleSecret('w', 'one'));
          return events.some((e) => e.type === 'put' && e.name === 'istio.one');
        });
        await store.deleteSecret('w', 'istio.one');
        await waitFor('the delete', () => events.some((e) => e.type === 'delete' && e.name === 'istio.one'));
        stop();
      }));

    it('with a KEK, private keys are sealed at rest; another instance without it gets a one-line error', async () => {
      const kek = kekFromBytes(randomBytes(32));
      await withStore(
        async (store, again) => {
          const s = sampleSecret('k', 'sealed');
          await store.putSecret(s);
          assert.equal((await store.getSecret('k', 'istio.sealed'))!.keyPem, s.keyPem);
          const raw = await again({ kek: undefined });
          try {
            await assert.rejects(raw.getSecret('k', 'istio.sealed'), (e: Error) => e instanceof UserError && /--kek-file/.test(e.message) && !e.message.includes('\n'));
          } finally {
            await raw.close();
          }
          assert.ok(!isSealed(s.keyPem));
        },
        { kek },
      );
    });

    it('the root certificate alone is read without the KEK, the key never opened', async () => {
      const kek = kekFromBytes(randomBytes(32));
      await withStore(
        async (store, again) => {
          assert.equal(await store.getCaCertificate(), undefined, 'before ca init');
          await store.createCaSecretIfAbsent({ caCertPem: 'the-root-cert', caKeyPem: 'the-root-key' });
          const raw = await again({ kek: undefined });
          try {
            assert.equal(await raw.getCaCertificate(), 'the-root-cert');
            await assert.rejects(raw.getCaSecret(), /--kek-file/, 'the key still needs the KEK');
          } finally {
            await raw.close();
          }
        },
        { kek },
      );
    });

    it('a single store leads its election and is available', () =>
      withStore(async (store) => {
        const election = await store.leaderElection('conformance');
        try {
          await waitFor('leadership', () => election.isLeader());
          assert.equal(store.unavailableReason(), undefined);
        } finally {
          await election.close();
        }
      }));
  });
}
