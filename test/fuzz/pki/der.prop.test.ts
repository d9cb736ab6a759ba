/** Properties of the DER reader in src/pki/der.ts: hostile bytes, and our encoder read back. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { children, decodeOid, DerError, oid, readNode, readWhole, TAG, tlv, unsignedInteger } from '../../../src/pki/der';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';
import { testCa } from '../../helpers/pki';
import { applyMutation, derMutation, DerTree, dottedOid, fromTree, randomDerTree, toTree } from './der-mutation';
import { fromPem } from '../../../src/pki/pem';

const bytes = (max = 64) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));

/** Reads a tree back the way a parser would: constructed tags through children(), the rest as content. */
function readTree(der: Buffer): DerTree {
  const n = readWhole(der, 'value');
  return n.tag & 0x20 ? { tag: n.tag, children: children(n).map((c) => readTree(c.raw)) } : { tag: n.tag, content: n.content };
}

/** What readTree gives for a generated tree: DER held in an OCTET STRING is that string's content. */
function asRead(t: DerTree): DerTree {
  if (t.tag & 0x20) return { tag: t.tag, children: (t.children ?? []).map(asRead) };
  return { tag: t.tag, content: t.children ? Buffer.concat([t.prefix ?? Buffer.alloc(0), ...t.children.map(fromTree)]) : (t.content ?? Buffer.alloc(0)) };
}

/** X.690 8.19, by the letter, with exact arcs: undefined when the content is not a valid OID. */
function referenceOid(content: Buffer): string | undefined {
  if (content.length === 0) return undefined;
  const subids: bigint[] = [];
  let v = 0n;
  let fresh = true;
  for (const b of content) {
    if (fresh && b === 0x80) return undefined; // a subidentifier's leading octet is never 0x80
    v = (v << 7n) | BigInt(b & 0x7f);
    fresh = false;
    if (!(b & 0x80)) {
      subids.push(v);
      v = 0n;
      fresh = true;
    }
  }
  if (!fresh) return undefined;
  const [first, ...rest] = subids;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...rest].join('.');
}

const certDer = fromPem(testCa().rootCertPem, 'CERTIFICATE');

describe('DER reader properties', () => {
  it('readNode on random bytes at any offset: a DerError or a node that lies within the buffer', () => {
    fc.assert(
      fc.property(bytes(), fc.nat(80), (b, offset) => {
        const r = parseOrOwnError([DerError], () => readNode(b, offset));
        if ('error' in r) return;
        const n = r.value;
        assert.equal(n.tag, b[offset]);
        assert.ok(offset + n.raw.length <= b.length);
        assert.ok(n.raw.equals(b.subarray(offset, offset + n.raw.length)));
        assert.ok(n.raw.subarray(n.raw.length - n.content.length).equals(n.content));
        // DER: the shortest length form
        const hdr = n.raw.length - n.content.length;
        assert.equal(hdr, n.content.length < 0x80 ? 2 : n.content.length < 0x100 ? 3 : n.content.length < 0x10000 ? 4 : n.content.length < 0x1000000 ? 5 : 6);
      }),
      fuzzParameters(300),
    );
  });

  it('readWhole and children on random bytes: DerError only, and children tile the content exactly', () => {
    fc.assert(
      fc.property(bytes(), (b) => {
        const whole = parseOrOwnError([DerError], () => readWhole(b, 'random'));
        if ('value' in whole) assert.equal(whole.value.raw.length, b.length);
        const kids = parseOrOwnError([DerError], () => children(b));
        if ('value' in kids) assert.ok(Buffer.concat(kids.value.map((k) => k.raw)).equals(b));
      }),
      fuzzParameters(300),
    );
  });

  it('our encoder\'s TLVs read back equal, with long-form lengths', () => {
    const bigLeaf = fc.integer({ min: 0x80, max: 0x10100 }).map((n) => ({ tag: TAG.OCTET_STRING, content: Buffer.alloc(n, 0x5a) }) as DerTree);
    const tree = fc.oneof({ weight: 9, arbitrary: randomDerTree }, { weight: 1, arbitrary: fc.array(bigLeaf, { maxLength: 2 }).map((c) => ({ tag: TAG.SEQUENCE, children: c }) as DerTree) });
    fc.assert(
      fc.property(tree, (t) => {
        const der = fromTree(t);
        assert.deepEqual(readTree(der), asRead(t));
        assert.ok(fromTree(readTree(der)).equals(der));
      }),
      fuzzParameters(200),
    );
  });

  it('a certificate taken apart into a tree and put back is the same bytes', () => {
    assert.ok(fromTree(toTree(certDer)).equals(certDer));
  });

  it('a mutated certificate read node by node: DerError only, never a node outside its parent', () => {
    const original = toTree(certDer);
    fc.assert(
      fc.property(derMutation, (m) => {
        const b = applyMutation(original, m);
        const walk = (buf: Buffer): void => {
          for (const n of children(buf)) {
            assert.ok(n.raw.length <= buf.length);
            if (n.tag & 0x20) walk(n.content);
          }
        };
        parseOrOwnError([DerError], () => walk(b));
      }),
      fuzzParameters(300),
    );
  });

  it('decodeOid on random content: exactly the X.690 reading, or a DerError when the content is not an OID', () => {
    const content = fc.oneof(bytes(12), fc.array(fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0x80, max: 0xff })), { minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a)));
    fc.assert(
      fc.property(content, (c) => {
        const want = referenceOid(c);
        const got = parseOrOwnError([DerError], () => decodeOid(c));
        if (want === undefined) assert.ok('error' in got, `accepted ${c.toString('hex')} as ${'value' in got ? got.value : ''}`);
        else assert.deepEqual(got, { value: want }, `content ${c.toString('hex')}`);
      }),
      fuzzParameters(500),
    );
  });

  it('oid -> decodeOid round trip for dotted OIDs the encoder takes (first arcs 0.0-0.39, 1.0-1.39, 2.0-2.47)', () => {
    fc.assert(
      fc.property(dottedOid, (d) => {
        assert.equal(decodeOid(readWhole(oid(d), 'OID').content), d);
      }),
      fuzzParameters(300),
    );
  });

  // from one byte up: unsignedInteger(empty) writes an INTEGER with no content (invalid); no caller passes one
  it('unsignedInteger: a minimal positive INTEGER of the same value', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.from(u)), (b) => {
        const n = readWhole(unsignedInteger(b), 'INTEGER');
        assert.equal(n.tag, TAG.INTEGER);
        assert.ok(n.content.length >= 1);
        assert.equal(n.content[0] & 0x80, 0, 'never negative');
        if (n.content.length > 1) assert.ok(n.content[0] !== 0 || n.content[1] & 0x80, 'no redundant leading zero');
        assert.equal(BigInt(`0x${n.content.toString('hex')}`), BigInt(`0x${b.toString('hex')}`));
      }),
      fuzzParameters(300),
    );
  });

  it('tlv refuses a value too long for its 4-byte length, and readNode refuses lengths over 4 bytes', () => {
    assert.throws(() => tlv(TAG.OCTET_STRING, Buffer.alloc(0x1000000)), /too long/);
    assert.throws(() => readNode(Buffer.from([0x04, 0x85, 1, 0, 0, 0, 0])), DerError);
  });
});
