import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Rotator } from '../../src/agent/rotator';
import { silentLogger } from '../../src/common/log';

/** A certificate as the CA issues it: notBefore back-dated by a minute for clock skew, notAfter `ttlMs` after now. */
const issuedNow = (ttlMs: number) => ({ notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + ttlMs) });

it('renews at half the lifetime asked for, not half of the back-dated one (which would be at once)', async () => {
  const ttlMs = 400;
  const issuedAt = Date.now();
  const keepAlive = setTimeout(() => undefined, 10_000); // the rotator's timer is unref'd
  const renewedAt = await new Promise<number>((resolve) => {
    const r = new Rotator(issuedNow(ttlMs), {
      what: 'test certificate',
      renew: async () => {
        resolve(Date.now());
        void r.stop();
        return issuedNow(ttlMs);
      },
      askedLifetimeMs: ttlMs,
      random: () => 0,
      logger: silentLogger,
    });
  });
  clearTimeout(keepAlive);
  assert.ok(renewedAt - issuedAt >= ttlMs / 2 - 5, `renewed ${renewedAt - issuedAt} ms after issuance of a ${ttlMs} ms certificate`);
});
