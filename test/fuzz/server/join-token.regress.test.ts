/** Inputs the join token properties found, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { looksLikeJoinToken } from '../../../src/server/join-token';

describe('join tokens: inputs the properties found', () => {
  it('a token whose last character carries bits 32 bytes do not have is not a join token', () => {
    // "cjt1." + 42 "A" + "_" was accepted; no 32 bytes encode to it (their base64url ends in A, E, I, ... 8)
    assert.equal(looksLikeJoinToken(`cjt1.${'A'.repeat(42)}_`), false);
    assert.equal(looksLikeJoinToken(`cjt1.${'A'.repeat(42)}B`), false);
    assert.equal(looksLikeJoinToken(`cjt1.${'A'.repeat(42)}w`), true);
    assert.equal(looksLikeJoinToken(` cjt1.${Buffer.alloc(32, 0xff).toString('base64url')}\n`), true);
  });
});
