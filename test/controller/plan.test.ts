import assert from 'node:assert/strict';
import { test } from 'node:test';
import { refreshTime, RotationPolicy } from '../../src/ca/rotation';
import { KnownSecret, planReconcile, PlanInput } from '../../src/controller/plan';
import { minReissueIntervalMs } from '../../src/controller/secret-controller';

const S = 1000;
const H = 3600 * S;
const T0 = Date.parse('2026-06-01T00:00:00Z');
const ROOT = 'root-a';
const policy: RotationPolicy = { gracePeriodRatio: 0.5, minGracePeriodMs: 0, clockSkewMs: 60 * S };

/** A secret issued at `issuedAt` for `ttl`, as the CA writes it (notBefore back-dated by the skew). */
function known(ns: string, sa: string, issuedAt: number, ttl: number, extra: Partial<KnownSecret> = {}): KnownSecret {
  const notBefore = new Date(issuedAt - 60 * S);
  const notAfter = new Date(issuedAt + ttl);
  return { namespace: ns, serviceAccount: sa, version: 1, notBefore, notAfter, rootCertPem: ROOT, refreshAt: refreshTime(notBefore, notAfter, policy).getTime(), writtenAt: issuedAt, ...extra };
}

function input(over: Partial<PlanInput>): PlanInput {
  return { desired: new Map(), known: new Map(), goneSince: new Map(), now: T0, rootCertPem: ROOT, rotation: policy, deleteDelayMs: 60 * S, minReissueIntervalMs: 10 * S, ...over };
}

const desired = (entries: Record<string, string[]>) => new Map(Object.entries(entries).map(([ns, sas]) => [ns, new Set(sas)]));
const knownMap = (...ks: KnownSecret[]) => new Map(ks.map((k) => [`${k.namespace}/${k.serviceAccount}`, k]));

test('plan: table of (desired, known, now) -> creates, refreshes, deletes, next wake', () => {
  const cases: Array<{ name: string; in: Partial<PlanInput>; create?: string[]; refresh?: string[]; del?: string[]; held?: number; pending?: number; wake?: number }> = [
    { name: 'nothing known: create every desired account', in: { desired: desired({ prod: ['default', 'api'] }) }, create: ['prod/default', 'prod/api'] },
    {
      name: 'current secret: nothing to do; wake at its refresh time (half of the asked lifetime)',
      in: { desired: desired({ prod: ['api'] }), known: knownMap(known('prod', 'api', T0, 24 * H)) },
      wake: T0 + 12 * H,
    },
    {
      name: 'at the grace period: refresh (expiring)',
      in: { desired: desired({ prod: ['api'] }), known: knownMap(known('prod', 'api', T0 - 12 * H, 24 * H)) },
      refresh: ['prod/api:expiring'],
    },
    {
      name: 'another root: refresh at once (root-changed)',
      in: { desired: desired({ prod: ['api'] }), known: knownMap(known('prod', 'api', T0 - H, 24 * H, { rootCertPem: 'root-b' })) },
      refresh: ['prod/api:root-changed'],
    },
    {
      name: 'unparseable certificate: refresh',
      in: { desired: desired({ prod: ['api'] }), known: knownMap({ ...known('prod', 'api', T0 - H, 24 * H), notBefore: undefined, notAfter: undefined, refreshAt: NaN }) },
      refresh: ['prod/api:unparseable'],
    },
    {
      name: 'due for expiring but written a moment ago (a grace period longer than the lifetime): held by the floor, woken when it ends',
      in: { desired: desired({ prod: ['api'] }), rotation: { ...policy, gracePeriodRatio: 1 }, known: knownMap(known('prod', 'api', T0 - 2 * S, 24 * H, { refreshAt: T0 - 2 * S })) },
      held: 1,
      wake: T0 + 8 * S,
    },
    {
      name: 'another root found on a secret written a moment ago: refreshed at once (no floor)',
      in: { desired: desired({ prod: ['api'] }), known: knownMap(known('prod', 'api', T0 - 2 * S, 24 * H, { rootCertPem: 'root-b' })) },
      refresh: ['prod/api:root-changed'],
    },
    {
      name: 'account gone: pending until the delete delay, then deleted',
      in: { desired: desired({ prod: ['default'] }), known: knownMap(known('prod', 'default', T0, 24 * H), known('prod', 'old', T0, 24 * H)), goneSince: new Map([['prod/old', T0 - 30 * S]]) },
      pending: 1,
      wake: T0 + 30 * S,
    },
    {
      name: 'account gone longer than the delay: deleted',
      in: { desired: desired({}), known: knownMap(known('prod', 'old', T0, 24 * H)), goneSince: new Map([['prod/old', T0 - 61 * S]]) },
      del: ['prod/old'],
    },
  ];
  for (const c of cases) {
    const plan = planReconcile(input(c.in));
    assert.deepEqual(plan.create.map((a) => `${a.namespace}/${a.serviceAccount}`), c.create ?? [], `${c.name}: create`);
    assert.deepEqual(plan.refresh.map((r) => `${r.known.namespace}/${r.known.serviceAccount}:${r.reason}`), c.refresh ?? [], `${c.name}: refresh`);
    assert.deepEqual(plan.delete.map((k) => `${k.namespace}/${k.serviceAccount}`), c.del ?? [], `${c.name}: delete`);
    assert.equal(plan.held, c.held ?? 0, `${c.name}: held`);
    assert.equal(plan.pendingDeletes, c.pending ?? 0, `${c.name}: pending`);
    if (c.wake !== undefined) assert.equal(plan.nextWakeAt, c.wake, `${c.name}: wake`);
  }
});

test('plan: a gone account starts its delete clock now, and a redeploy clears it', () => {
  const k = known('prod', 'old', T0, 24 * H);
  const first = planReconcile(input({ desired: desired({}), known: knownMap(k) }));
  assert.equal(first.goneSince.get('prod/old'), T0);
  const back = planReconcile(input({ desired: desired({ prod: ['old'] }), known: knownMap(k), goneSince: first.goneSince }));
  assert.equal(back.goneSince.size, 0);
  assert.equal(back.delete.length, 0);
});

test('plan: a 4 s TTL with 60 s of back-dating is due at 2 s, not at once (the refresh loop of --workload-cert-ttl 4s)', () => {
  const k = known('prod', 'api', T0, 4 * S);
  const at = (ms: number) => planReconcile(input({ desired: desired({ prod: ['api'] }), known: knownMap(k), now: T0 + ms, minReissueIntervalMs: minReissueIntervalMs(4 * S) }));
  assert.equal(at(0).refresh.length, 0);
  assert.equal(at(1900).refresh.length, 0);
  assert.equal(at(2000).refresh.length, 1);
});

test('the floor: a tenth of the lifetime, at least a second', () => {
  assert.equal(minReissueIntervalMs(4 * S), 1000);
  assert.equal(minReissueIntervalMs(24 * H), 2.4 * H);
});
