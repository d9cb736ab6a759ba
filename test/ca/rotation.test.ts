import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkGracePeriodRatio, checkMinGracePeriod, gracePeriodMs, refreshReason, refreshTime, renewalTime } from '../../src/ca/rotation';

const H = 3_600_000;
const t0 = new Date('2026-01-01T00:00:00Z');
const at = (ms: number) => new Date(t0.getTime() + ms);

test("Citadel's grace period: max(ratio x lifetime, min grace)", () => {
  const cases: Array<[number, number, number, number]> = [
    // lifetime, ratio, min grace, expected grace
    [24 * H, 0.5, 10 * 60_000, 12 * H],
    [24 * H, 0.2, 10 * 60_000, 4.8 * H],
    [4000, 0.5, 0, 2000],
    [4000, 0.5, 3000, 3000], // min grace wins
  ];
  for (const [lifetime, ratio, min, want] of cases) {
    assert.equal(gracePeriodMs(t0, at(lifetime), { gracePeriodRatio: ratio, minGracePeriodMs: min }), want);
    assert.equal(refreshTime(t0, at(lifetime), { gracePeriodRatio: ratio, minGracePeriodMs: min }).getTime(), t0.getTime() + lifetime - want);
  }
});

test('refresh reasons: expiring at the grace period, root changed, unparseable', () => {
  const policy = { gracePeriodRatio: 0.5, minGracePeriodMs: 0 };
  const secret = { notBefore: t0, notAfter: at(24 * H), rootCertPem: 'root-a' };
  assert.equal(refreshReason(secret, 'root-a', at(11 * H), policy), undefined);
  assert.equal(refreshReason(secret, 'root-a', at(12 * H), policy), 'expiring');
  assert.equal(refreshReason(secret, 'root-b', at(1 * H), policy), 'root-changed');
  assert.equal(refreshReason({ rootCertPem: 'root-a' }, 'root-a', at(0), policy), 'unparseable');
  assert.equal(refreshReason({ ...secret, notAfter: new Date(NaN) }, 'root-a', at(0), policy), 'unparseable');
});

test('renewal time: half the lifetime, jittered earlier by at most the jitter share', () => {
  assert.equal(renewalTime(t0, at(100 * H), 0.5, 0).getTime(), at(50 * H).getTime());
  assert.equal(renewalTime(t0, at(100 * H), 0.5, 0.01, () => 1).getTime(), at(49 * H).getTime());
  for (let i = 0; i < 100; i++) {
    const r = renewalTime(t0, at(100 * H)).getTime();
    assert.ok(r >= at(49 * H).getTime() && r <= at(50 * H).getTime());
  }
});

test('grace-period ratio flag: outside [0,1] fatal, outside [0.2,0.8] a warning', () => {
  assert.match(checkGracePeriodRatio(1.5).fatal!, /within \[0, 1\]/);
  assert.match(checkGracePeriodRatio(-0.1).fatal!, /within \[0, 1\]/);
  assert.match(checkGracePeriodRatio(0.1).warning!, /recommended/);
  assert.deepEqual(checkGracePeriodRatio(0.5), {});
  assert.match(checkGracePeriodRatio(Number.NaN).fatal!, /within/);
});

test('the grace period is a share of the lifetime asked for, not of the back-dated one', () => {
  const skew = 60_000;
  const issued = at(0);
  const notBefore = new Date(issued.getTime() - skew);
  const policy = { gracePeriodRatio: 0.5, minGracePeriodMs: 0, clockSkewMs: skew };
  // 4 s asked: due at 2 s. On the back-dated 64 s it would be due 28 s before it was issued.
  assert.equal(refreshTime(notBefore, at(4000), policy).getTime(), at(2000).getTime());
  assert.equal(refreshTime(notBefore, at(24 * H), policy).getTime(), at(12 * H).getTime());
  assert.equal(refreshReason({ notBefore, notAfter: at(4000), rootCertPem: 'r' }, 'r', at(1000), policy), undefined);
});

test('a minimum grace period not shorter than the TTL is refused, in one line', () => {
  assert.match(checkMinGracePeriod(600_000, 300_000)!, /--workload-cert-min-grace-period \(600s\) must be shorter than --workload-cert-ttl \(300s\)/);
  assert.ok(checkMinGracePeriod(300_000, 300_000));
  assert.equal(checkMinGracePeriod(1000, 4000), undefined);
});
