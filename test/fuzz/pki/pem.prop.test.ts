/** Properties of src/pki/pem.ts: any text, mutated PEM, toPem round trips, long hostile input. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromPem, parsePemBlocks, PemError, splitCertificates, toPem } from '../../../src/pki/pem';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';

const label = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '.split('')), minLength: 1, maxLength: 24 });
const der = fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u));
/** Text that looks like PEM: the pieces of its grammar, mixed with anything. */
const pemish = fc
  .array(
    fc.oneof(
      fc.constantFrom('-----BEGIN ', '-----END ', '-----', 'CERTIFICATE', 'CERTIFICATE REQUEST', 'A', ' ', '\n', '\r\n', '\r', '\t', '=', 'MIIB', '+/', '-'),
      fc.string({ maxLength: 8 }),
      fc.tuple(label, der).map(([l, d]) => toPem(l, d)),
    ),
    { maxLength: 30 },
  )
  .map((parts) => parts.join(''));
const count = (text: string, s: string) => text.split(s).length - 1;

/** A PEM with characters deleted, inserted or replaced (dashes, label letters, base64, line ends). */
const mutatedPem = fc
  .tuple(
    label,
    der,
    fc.array(fc.record({ at: fc.nat(), del: fc.nat(3), ins: fc.string({ unit: fc.constantFrom(...'-ABZ09+/=\r\n \t'.split('')), maxLength: 3 }) }), { minLength: 1, maxLength: 4 }),
  )
  .map(([l, d, edits]) => {
    let text = toPem(l, d);
    for (const e of edits) {
      const at = e.at % (text.length + 1);
      text = text.slice(0, at) + e.ins + text.slice(at + e.del);
    }
    return { label: l, text };
  });

describe('PEM properties', () => {
  it('parsePemBlocks never throws on any text; every block has a PEM label and at most one block per BEGIN', () => {
    fc.assert(
      fc.property(fc.oneof(pemish, fc.string({ unit: 'binary', maxLength: 200 })), (text) => {
        const blocks = parsePemBlocks(text);
        assert.ok(blocks.length <= count(text, '-----BEGIN '));
        for (const b of blocks) {
          assert.match(b.label, /^[A-Z0-9 ]+$/);
          assert.ok(Buffer.isBuffer(b.der));
          assert.ok(text.includes(`-----END ${b.label}-----`));
        }
      }),
      fuzzParameters(400),
    );
  });

  it('toPem -> parsePemBlocks gives back every block in order, between any text without dashes, with LF or CRLF', () => {
    const junk = fc.string({ unit: fc.constantFrom(...'abc XYZ019\n\r\t:='.split('')), maxLength: 20 });
    fc.assert(
      fc.property(fc.array(fc.tuple(label, der, junk), { maxLength: 4 }), fc.boolean(), (blocks, crlf) => {
        let text = blocks.map(([l, d, j]) => toPem(l, d) + j).join('');
        if (crlf) text = text.replace(/\n/g, '\r\n');
        assert.deepEqual(
          parsePemBlocks(text).map((b) => [b.label, b.der.toString('hex')]),
          blocks.map(([l, d]) => [l, d.toString('hex')]),
        );
      }),
      fuzzParameters(300),
    );
  });

  it('fromPem on mutated PEM and any text: the DER of the one block with that label, or a PemError', () => {
    fc.assert(
      fc.property(fc.oneof(mutatedPem, fc.tuple(label, pemish).map(([l, text]) => ({ label: l, text }))), ({ label: l, text }) => {
        const r = parseOrOwnError([PemError], () => fromPem(text, l, 'the input'));
        const same = parsePemBlocks(text).filter((b) => b.label === l);
        if ('value' in r) {
          assert.equal(same.length, 1);
          assert.ok(r.value.equals(same[0].der));
        } else {
          assert.notEqual(same.length, 1);
          assert.match(r.error.message, same.length ? /^the input: expected one ".*" PEM block, found \d+$/ : /^the input: no ".*" PEM block found$/);
        }
      }),
      fuzzParameters(400),
    );
  });

  it('splitCertificates re-encodes exactly the CERTIFICATE blocks', () => {
    fc.assert(
      fc.property(pemish, (text) => {
        const certs = splitCertificates(text);
        assert.deepEqual(
          certs.map((p) => fromPem(p, 'CERTIFICATE').toString('hex')),
          parsePemBlocks(text).filter((b) => b.label === 'CERTIFICATE').map((b) => b.der.toString('hex')),
        );
      }),
      fuzzParameters(200),
    );
  });

  // No catastrophic backtracking: any fragment repeated to 1 MB parses and returns (within the
  // test runner's timeout). 1 MB a case, so even long runs stop at 100 cases.
  it('a 1 MB input made of any PEM-like fragment repeated parses at all, and finds what it holds', () => {
    const fragment = fc.oneof(
      fc.constantFrom('-----BEGIN A-----\n', '-----BEGIN ', ' ', 'A', '-', '-----BEGIN A-----\nAAAA\n-----END B-----\n', '-----END A', '\r'),
      pemish.filter((s) => s.length > 0),
    );
    fc.assert(
      fc.property(fc.constantFrom('-----BEGIN X-----\n', ''), fragment, (prefix, f) => {
        const text = prefix + f.repeat(Math.ceil((1 << 20) / f.length));
        const blocks = parsePemBlocks(text);
        assert.ok(blocks.length <= count(text, '-----BEGIN '));
      }),
      fuzzParameters(8, 100),
    );
  });
});
