/** Inputs the DER properties found, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeOid, DerError } from '../../../src/pki/der';

describe('DER reader: inputs the properties found', () => {
  it('an OID whose last arc has its continuation bit set is refused, not read as the arcs before it', () => {
    // 06 02 55 9d used to read as "2.5": the 0x9d arc was dropped
    assert.throws(() => decodeOid(Buffer.from([0x55, 0x9d])), (e) => e instanceof DerError && /truncated OBJECT IDENTIFIER/.test(e.message));
    assert.throws(() => decodeOid(Buffer.from([0x80])), DerError);
  });

  it('an OID whose first subidentifier takes two bytes (2.48 and up) is read whole', () => {
    // 06 02 81 00 is 2.48; it used to read as "2.49.0"
    assert.equal(decodeOid(Buffer.from([0x81, 0x00])), '2.48');
    assert.equal(decodeOid(Buffer.from([0x88, 0x37, 0x01])), '2.999.1');
  });

  it('an OID arc with a leading 0x80 octet (not DER) is refused, not read as the same OID', () => {
    // 2.5.29.17 (subjectAltName) with its 17 written as 80 11
    assert.throws(() => decodeOid(Buffer.from([0x55, 0x1d, 0x80, 0x11])), (e) => e instanceof DerError && /non-minimal/.test(e.message));
    assert.equal(decodeOid(Buffer.from([0x55, 0x1d, 0x11])), '2.5.29.17');
  });

  it('an OID arc past 2^53 is read exactly, not rounded into another OID', () => {
    // 2.25.<UUID> arcs are 128-bit; 90 80 80 80 80 80 80 07 used to read as "2.9007199254740920" (it is 2.9007199254740919)
    assert.equal(decodeOid(Buffer.from([0x90, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x07])), `2.${(0x10n << 49n) + 7n - 80n}`);
    const uuid = 0xf81d4fae7dec11d0a76500a0c91e6bf6n;
    const enc: number[] = [];
    for (let v = uuid; v > 0n; v >>= 7n) enc.unshift(Number(v & 0x7fn) | (enc.length ? 0x80 : 0));
    assert.equal(decodeOid(Buffer.from([0x69, ...enc])), `2.25.${uuid}`);
  });
});
