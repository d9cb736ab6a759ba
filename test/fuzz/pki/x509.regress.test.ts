/** Inputs the X.509 decoder properties found, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DerError } from '../../../src/pki/der';
import { decodeName } from '../../../src/pki/x509';

describe('X.509 decoders: inputs the properties found', () => {
  it('a Name attribute with a type and no value is a DerError, not a TypeError', () => {
    // SEQUENCE { SET { SEQUENCE { OID 2.5.4.10 } } }: an O= with its value dropped
    const name = Buffer.from('30093107300506035504' + '0a', 'hex');
    assert.throws(() => decodeName(name), (e) => e instanceof DerError && e.message === 'Name attribute 2.5.4.10: missing its value');
  });
});
