/**
 * DER as a tree, random well-formed DER, and mutations of real DER (certificates, CSRs): the
 * structure is edited (TLVs dropped, duplicated, swapped, retagged, grafted) and re-encoded
 * with consistent lengths so that the damage reaches deep into a parser, then raw bytes are
 * damaged on top (flips, truncation, lengths that lie, non-minimal lengths).
 */
import fc from 'fast-check';
import { oid, readNode, TAG, tlv } from '../../../src/pki/der';
import { OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_RSA_SHA256 } from '../../../src/pki/keys';
import { OID } from '../../../src/pki/x509';

export interface DerTree {
  tag: number;
  /** Primitive content; absent for constructed nodes and encapsulating strings. */
  content?: Buffer;
  /** Children of a constructed node, or the DER inside an OCTET/BIT STRING. */
  children?: DerTree[];
  /** Bytes before the encapsulated children (the unused-bits byte of a BIT STRING). */
  prefix?: Buffer;
  /** Written into this node's length header: a lie of this many bytes. */
  lengthDelta?: number;
  /** Written with one more length byte than needed (not DER). */
  longLength?: boolean;
}

function readAll(content: Buffer): DerTree[] | undefined {
  try {
    const out: DerTree[] = [];
    for (let off = 0; off < content.length; ) {
      const n = readNode(content, off);
      out.push(toTree(n.raw));
      off += n.raw.length;
    }
    return out;
  } catch {
    return undefined;
  }
}

/** The tree of one DER value; OCTET and BIT STRINGs that hold a SEQUENCE are opened too. */
export function toTree(der: Buffer): DerTree {
  const n = readNode(der, 0);
  if (n.tag & 0x20) return { tag: n.tag, children: readAll(n.content) ?? [] };
  if (n.tag === TAG.OCTET_STRING && n.content[0] === TAG.SEQUENCE) {
    const inner = readAll(n.content);
    if (inner) return { tag: n.tag, children: inner, prefix: Buffer.alloc(0) };
  }
  if (n.tag === TAG.BIT_STRING && n.content[0] === 0 && n.content[1] === TAG.SEQUENCE) {
    const inner = readAll(n.content.subarray(1));
    if (inner) return { tag: n.tag, children: inner, prefix: n.content.subarray(0, 1) };
  }
  return { tag: n.tag, content: n.content };
}

function header(tag: number, len: number, long: boolean): Buffer {
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (!long && len < 0x80) return Buffer.from([tag, len]);
  if (long) bytes.unshift(0);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

export function fromTree(t: DerTree): Buffer {
  const content = t.children ? Buffer.concat([t.prefix ?? Buffer.alloc(0), ...t.children.map(fromTree)]) : (t.content ?? Buffer.alloc(0));
  if (t.lengthDelta === undefined && !t.longLength) return tlv(t.tag, content);
  const len = Math.max(0, content.length + (t.lengthDelta ?? 0));
  return Buffer.concat([header(t.tag, len, t.longLength ?? false), content]);
}

export function cloneTree(t: DerTree): DerTree {
  return { ...t, ...(t.children ? { children: t.children.map(cloneTree) } : {}) };
}

/** Every node in preorder, with its parent (undefined for the root). */
function nodes(t: DerTree, parent?: DerTree, out: Array<{ node: DerTree; parent?: DerTree }> = []) {
  out.push({ node: t, parent });
  for (const c of t.children ?? []) nodes(c, t, out);
  return out;
}

const INTERESTING_TAGS = [
  TAG.BOOLEAN, TAG.INTEGER, TAG.BIT_STRING, TAG.OCTET_STRING, TAG.NULL, TAG.OID, TAG.UTF8_STRING, TAG.PRINTABLE_STRING,
  TAG.IA5_STRING, TAG.UTC_TIME, TAG.GENERALIZED_TIME, TAG.SEQUENCE, TAG.SET, 0x80, 0x81, 0x82, 0x86, 0x87, 0xa0, 0xa3, 0x1f,
];
const tagArb = fc.oneof(fc.constantFrom(...INTERESTING_TAGS), fc.integer({ min: 0, max: 255 }));

/** The OIDs our parsers look for, so that random DER says something they act on. */
export const KNOWN_OIDS: string[] = [...Object.values(OID), OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_RSA_SHA256, '1.2.840.10045.3.1.7', '1.3.132.0.34'];

const treeOp = fc.record({
  op: fc.constantFrom('drop', 'duplicate', 'swap', 'retag', 'replace', 'graft', 'truncate', 'flip', 'empty', 'lie', 'long'),
  at: fc.nat(),
  other: fc.nat(),
  tag: tagArb,
  bytes: fc.uint8Array({ maxLength: 40 }),
  n: fc.integer({ min: -3, max: 300 }),
});
type TreeOp = typeof treeOp extends fc.Arbitrary<infer T> ? T : never;

const byteOp = fc.record({
  op: fc.constantFrom('flip', 'set', 'truncate', 'insert', 'delete'),
  at: fc.nat(),
  value: fc.integer({ min: 1, max: 255 }),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  n: fc.integer({ min: 1, max: 16 }),
});
type ByteOp = typeof byteOp extends fc.Arbitrary<infer T> ? T : never;

/** One to four edits: structural ones first, then byte-level damage. */
export const derMutation = fc
  .record({ tree: fc.array(treeOp, { maxLength: 3 }), bytes: fc.array(byteOp, { maxLength: 2 }) })
  .filter((m) => m.tree.length + m.bytes.length > 0);
export type DerMutation = typeof derMutation extends fc.Arbitrary<infer T> ? T : never;

function applyTreeOp(root: DerTree, op: TreeOp): void {
  const all = nodes(root);
  const { node, parent } = all[op.at % all.length];
  const siblings = parent?.children;
  const i = siblings ? siblings.indexOf(node) : -1;
  switch (op.op) {
    case 'drop':
      if (siblings) siblings.splice(i, 1);
      break;
    case 'duplicate':
      if (siblings) siblings.splice(i, 0, cloneTree(node));
      break;
    case 'swap':
      if (siblings && i + 1 < siblings.length) [siblings[i], siblings[i + 1]] = [siblings[i + 1], siblings[i]];
      break;
    case 'retag':
      node.tag = op.tag;
      break;
    case 'replace':
      Object.assign(node, { tag: op.tag, content: Buffer.from(op.bytes), children: undefined, prefix: undefined });
      break;
    case 'graft': {
      const donor = cloneTree(all[op.other % all.length].node);
      if (siblings) siblings[i] = donor;
      break;
    }
    case 'truncate':
      if (node.content) node.content = node.content.subarray(0, Math.max(0, op.n) % (node.content.length + 1));
      else if (node.children) node.children = node.children.slice(0, Math.max(0, op.n) % (node.children.length + 1));
      break;
    case 'flip':
      if (node.content && node.content.length > 0) {
        const c = Buffer.from(node.content);
        c[Math.abs(op.n) % c.length] ^= op.bytes[0] || 0x01;
        node.content = c;
      } else node.prefix = Buffer.from(op.bytes.subarray(0, 1));
      break;
    case 'empty':
      if (node.children) node.children = [];
      else node.content = Buffer.alloc(0);
      break;
    case 'lie':
      node.lengthDelta = op.n === 0 ? 1 : op.n;
      break;
    case 'long':
      node.longLength = true;
      break;
  }
}

function applyByteOp(b: Buffer, op: ByteOp): Buffer {
  if (b.length === 0) return op.op === 'insert' ? Buffer.from(op.bytes) : b;
  const at = op.at % b.length;
  switch (op.op) {
    case 'flip': {
      const c = Buffer.from(b);
      c[at] ^= op.value;
      return c;
    }
    case 'set': {
      const c = Buffer.from(b);
      c[at] = op.value;
      return c;
    }
    case 'truncate':
      return b.subarray(0, at);
    case 'insert':
      return Buffer.concat([b.subarray(0, at), op.bytes, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + op.n)]);
  }
}

export function applyMutation(original: DerTree, m: DerMutation): Buffer {
  const root = cloneTree(original);
  for (const op of m.tree) applyTreeOp(root, op);
  let out = fromTree(root);
  for (const op of m.bytes) out = applyByteOp(out, op);
  return out;
}

/** Random well-formed DER: the tags and OIDs of certificates, with random contents. */
export const randomDerTree: fc.Arbitrary<DerTree> = fc.letrec<{ node: DerTree; leaf: DerTree; cons: DerTree }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('cons')),
  leaf: fc.oneof(
    fc.constantFrom(...KNOWN_OIDS).map((o) => ({ tag: TAG.OID, content: readNode(oid(o)).content })),
    fc.record({ tag: fc.constantFrom(TAG.BOOLEAN, TAG.INTEGER, TAG.BIT_STRING, TAG.OCTET_STRING, TAG.UTF8_STRING, TAG.UTC_TIME, 0x80, 0x81, 0x82, 0x86, 0x87), content: fc.uint8Array({ maxLength: 24 }).map((u) => Buffer.from(u)) }),
  ),
  cons: fc.oneof(
    fc.record({ tag: fc.constantFrom(TAG.SEQUENCE, TAG.SET, 0xa0, 0xa3), children: fc.array(tie('node'), { maxLength: 4 }) }),
    // an OCTET STRING holding DER, as extension values do
    fc.record({ tag: fc.constant(TAG.OCTET_STRING), children: fc.array(tie('node'), { minLength: 1, maxLength: 2 }), prefix: fc.constant(Buffer.alloc(0)) }),
  ),
})).node;

/** Dotted OIDs our encoder can write (the first subidentifier in one byte: up to 2.47). */
export const dottedOid: fc.Arbitrary<string> = fc
  .integer({ min: 0, max: 2 })
  .chain((a) => fc.tuple(fc.constant(a), fc.nat(a === 2 ? 47 : 39), fc.array(fc.oneof(fc.nat(200), fc.nat(2 ** 32), fc.maxSafeNat()), { maxLength: 6 })))
  .map(([a, b, rest]) => [a, b, ...rest].join('.'));
