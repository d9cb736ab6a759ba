/** Properties of join tokens (src/server/join-token.ts): the exact format, and a hash that never throws. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { hashJoinToken, looksLikeJoinToken, newJoinToken } from '../../../src/server/join-token';
import { fuzzParameters } from '../../helpers/fuzz';

/** What newJoinToken can produce: "cjt1." and the canonical base64url of 32 bytes (43 characters). */
function isTokenFormat(s: string): boolean {
  const body = s.startsWith('cjt1.') ? s.slice(5) : undefined;
  return body !== undefined && /^[A-Za-z0-9_-]{43}$/.test(body) && Buffer.from(body, 'base64url').toString('base64url') === body;
}

// JavaScript's trim() whitespace: what an operator's paste or a file's line end may add
const whitespace = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r', '\v', '\f', '\u00a0', '\ufeff', '\u2028', '\u3000'), maxLength: 3 });
const anyString = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 60 }); // lone surrogates too
const token = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `cjt1.${Buffer.from(b).toString('base64url')}`);
/** A real-looking token with one character replaced, inserted or removed, or its prefix changed. */
const nearToken = fc
  .tuple(token, fc.nat(), fc.constantFrom('replace', 'insert', 'delete', 'prefix'), fc.constantFrom(...'Aa9_-+/=.: \u00e9'.split(''), 'CJT1.', 'cjt2.', 'cjt1', ''))
  .map(([t, at, op, c]) => {
    const i = at % t.length;
    if (op === 'replace') return t.slice(0, i) + c + t.slice(i + 1);
    if (op === 'insert') return t.slice(0, i) + c + t.slice(i);
    if (op === 'delete') return t.slice(0, i) + t.slice(i + 1);
    return c + t.slice(5);
  });

describe('join token properties', () => {
  it('newJoinToken tokens look like join tokens, with and without surrounding whitespace, and their record holds their hash', () => {
    fc.assert(
      fc.property(fc.nat(10 ** 9), whitespace, whitespace, (ttl, before, after) => {
        const { token: t, record } = newJoinToken('node-1', ttl);
        assert.ok(isTokenFormat(t), t);
        assert.ok(looksLikeJoinToken(t));
        assert.ok(looksLikeJoinToken(before + t + after));
        assert.equal(record.hash, hashJoinToken(before + t + after));
      }),
      fuzzParameters(200),
    );
  });

  it('looksLikeJoinToken accepts exactly the format newJoinToken produces (after trimming)', () => {
    fc.assert(
      fc.property(fc.oneof(token, nearToken, anyString), whitespace, whitespace, (s, before, after) => {
        assert.equal(looksLikeJoinToken(before + s + after), isTokenFormat((before + s + after).trim()), JSON.stringify(s));
      }),
      fuzzParameters(500),
    );
  });

  it('hashJoinToken never throws, is hex SHA-256 of the trimmed token, and ignores surrounding whitespace', () => {
    fc.assert(
      fc.property(fc.oneof(anyString, token, nearToken), whitespace, whitespace, (s, before, after) => {
        const h = hashJoinToken(before + s + after);
        assert.match(h, /^[0-9a-f]{64}$/);
        assert.equal(h, hashJoinToken(s));
        assert.equal(h, createHash('sha256').update(s.trim(), 'utf8').digest('hex'));
      }),
      fuzzParameters(500),
    );
  });

  it('different well-formed tokens never share a hash', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 50 }), fc.string({ unit: 'binary', maxLength: 50 }), (a, b) => {
        fc.pre(a.trim() !== b.trim());
        assert.notEqual(hashJoinToken(a), hashJoinToken(b));
      }),
      fuzzParameters(300),
    );
  });
});
