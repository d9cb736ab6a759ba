/**
 * Property tests for the small parsers added with eviction and the audit log: the store's
 * records (join tokens, node records, evictions), audit log lines and ZooKeeper digest
 * credentials. Random and mutated input only ever raises the module's own error; encoders
 * round-trip; a credential's password never reaches what is shown or put in an ACL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fuzzParameters } from '../../helpers/fuzz';
import { AuditLineError, AuditRecord, parseAuditLine } from '../../../src/ca/audit-log';
import { UserError } from '../../../src/common/errors';
import { decodeJoinTokenRecord, decodeNodeEviction, decodeNodeRecord, encodeRecord, evictionName, isEvictionName } from '../../../src/store/records';
import { digestAuth } from '../../../src/store/zk/auth';


/** Calls `f`; a throw must be a plain Error of ours (not a TypeError or RangeError from a blind spot). */
function ownErrorOnly<T>(f: () => T, allowed: (e: unknown) => boolean): T | undefined {
  try {
    return f();
  } catch (err) {
    assert.ok(allowed(err), `unexpected ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
    return undefined;
  }
}
const plainError = (e: unknown) => e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError) && !(e instanceof SyntaxError);

const iso = fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => new Date(ms).toISOString());
const host = fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?$/);
const jsonish = fc.oneof(fc.string(), fc.json(), fc.jsonValue().map((v) => JSON.stringify(v)));

describe('store records', () => {
  it('round-trip through encodeRecord', () => {
    fc.assert(
      fc.property(fc.string(), host, iso, iso, fc.string(), (s, h, a, b, reason) => {
        const token = { hash: s, host: h, expiresAt: a, createdAt: b };
        assert.deepEqual(decodeJoinTokenRecord('t', encodeRecord(token)), token);
        const record = { host: h, serialNumber: s, issuedAt: a, notAfter: b, lastContact: a };
        assert.deepEqual(decodeNodeRecord('n', encodeRecord(record)), record);
        const eviction = { host: h, evictedAt: a, reason };
        assert.deepEqual(decodeNodeEviction('e', encodeRecord(eviction)), eviction);
        assert.ok(isEvictionName(evictionName(eviction)));
      }),
      fuzzParameters(300),
    );
  });

  it('any other text is a plain Error naming where it came from, never a crash', () => {
    fc.assert(
      fc.property(jsonish, (text) => {
        for (const decode of [decodeJoinTokenRecord, decodeNodeRecord, decodeNodeEviction]) {
          const r = ownErrorOnly(() => decode('znode /x', text), (e) => plainError(e) && (e as Error).message.startsWith('znode /x does not hold'));
          if (r) for (const v of Object.values(r)) assert.equal(typeof v, 'string');
        }
      }),
      fuzzParameters(300),
    );
  });
});

describe('audit log lines', () => {
  const record: fc.Arbitrary<AuditRecord> = fc.oneof(
    fc.record({ time: iso, event: fc.constant('issued' as const), api: fc.constantFrom('CreateCertificate' as const, 'HandleCSR' as const, 'AttestNode' as const, 'secret-controller' as const), caller: fc.string(), spiffeId: fc.string(), serial: fc.string(), notAfter: iso }),
    fc.record({ time: iso, event: fc.constant('refused' as const), api: fc.constantFrom('CreateCertificate' as const, 'WatchSecrets' as const), caller: fc.string(), node: host, code: fc.string(), reason: fc.string() }),
  );

  it('a written line reads back as it was', () => {
    fc.assert(
      fc.property(record, (r) => assert.deepEqual({ ...parseAuditLine(JSON.stringify(r)) }, { ...r })),
      fuzzParameters(300),
    );
  });

  it('random and truncated lines are AuditLineError, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(jsonish, fc.tuple(record, fc.nat()).map(([r, n]) => JSON.stringify(r).slice(0, n))), (line) => {
        ownErrorOnly(() => parseAuditLine(line), (e) => e instanceof AuditLineError);
      }),
      fuzzParameters(300),
    );
  });
});

describe('ZooKeeper digest credentials', () => {
  it('user:password gives the ACL id user:base64(sha1); anything else is a one-line UserError; the password is never shown', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }), (user, password) => {
        const text = `${user}:${password}`;
        const auth = ownErrorOnly(() => digestAuth(text, '--zk-auth-file f'), (e) => e instanceof UserError && !(e as Error).message.includes('\n'));
        if (!auth) return;
        // ZooKeeper splits user from password at the first colon, and so do we.
        assert.equal(auth.aclId.split(':')[0], text.split(':')[0]);
        assert.equal(auth.credentials.toString(), text);
        if (password.length >= 4) assert.ok(!auth.describe.includes(password) || user.includes(password), 'the password is not in what is shown');
      }),
      fuzzParameters(300),
    );
  });
});
