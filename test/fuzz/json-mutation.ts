/**
 * Mutations of JSON documents for the property tests of JSON boundaries (Marathon payloads,
 * definitions the admission proxy reviews): values replaced, retyped, deleted, swapped for tricky
 * strings, keys added, values wrapped; by path, copying only along the path.
 */
import fc from 'fast-check';

export type Json = unknown;
export type Step = string | number;

/** Every path in a JSON value, the root included. */
export function paths(v: Json, prefix: Step[] = [], out: Step[][] = []): Step[][] {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
  return out;
}

/** Sets an own property as JSON.parse does (an assignment to "__proto__" would change the prototype). */
export function own(o: Record<string, Json>, k: string, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

const DELETE = Symbol('delete');

function edit(doc: Json, at: Step[], f: (old: Json) => Json | typeof DELETE): Json {
  if (at.length === 0) {
    const r = f(doc);
    return r === DELETE ? null : r;
  }
  const [head, ...rest] = at;
  if (Array.isArray(doc) && typeof head === 'number' && head < doc.length) {
    const copy = [...doc];
    const r = rest.length === 0 ? f(doc[head]) : edit(doc[head], rest, f);
    if (r === DELETE) copy.splice(head, 1);
    else copy[head] = r;
    return copy;
  }
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc) && typeof head === 'string' && Object.hasOwn(doc, head)) {
    const copy: Record<string, Json> = {};
    for (const [k, v] of Object.entries(doc)) own(copy, k, v);
    const old = (doc as Record<string, Json>)[head];
    const r = rest.length === 0 ? f(old) : edit(old, rest, f);
    if (r === DELETE) delete copy[head];
    else own(copy, head, r);
    return copy;
  }
  return doc; // the path went away with an earlier edit
}

/** -0 is not JSON; keep generated values JSON-exact so a round-trip property is about the parser. */
function noNegativeZero(v: Json): Json {
  if (Object.is(v, -0)) return 0;
  if (Array.isArray(v)) return v.map(noNegativeZero);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v)) own(o, k, noNegativeZero(x));
    return o;
  }
  return v;
}

/** Small random JSON values, JSON-exact. */
export const jsonValue = fc.jsonValue({ maxDepth: 2 }).map(noNegativeZero);

export interface JsonOp {
  op: 'replace' | 'retype' | 'delete' | 'tricky-string' | 'add-key' | 'wrap';
  at: number;
  value: Json;
  tricky: string;
  key: string;
  kind: number;
}

/** One mutation, its tricky strings and keys those of the boundary under test. */
export function jsonOp(trickyStrings: readonly string[], trickyKeys: readonly string[]): fc.Arbitrary<JsonOp> {
  return fc.record(
    {
      op: fc.constantFrom('replace' as const, 'retype' as const, 'delete' as const, 'tricky-string' as const, 'add-key' as const, 'wrap' as const),
      at: fc.nat(),
      value: jsonValue,
      tricky: fc.constantFrom(...trickyStrings),
      key: fc.oneof(fc.constantFrom(...trickyKeys), fc.string({ maxLength: 6 })),
      kind: fc.nat(5),
    },
    { noNullPrototype: true },
  );
}

/** Applies `op` at one of `all` (the paths of the document before any mutation). */
export function applyOp(doc: Json, all: Step[][], op: JsonOp): Json {
  const at = all[op.at % all.length];
  return edit(doc, at, (old) => {
    switch (op.op) {
      case 'replace':
        return op.value;
      case 'retype':
        return [typeof old === 'number' ? String(old) : typeof old === 'string' ? Number(old) || 0 : null, null, [], {}, true, old === null ? 0 : [old]][op.kind];
      case 'delete':
        return DELETE;
      case 'tricky-string':
        return op.tricky;
      case 'add-key': {
        if (old === null || typeof old !== 'object' || Array.isArray(old)) return old;
        const copy: Record<string, Json> = {};
        for (const [k, v] of Object.entries(old)) own(copy, k, v);
        own(copy, op.key, op.kind % 2 ? op.tricky : op.value);
        return copy;
      }
      case 'wrap':
        return op.kind % 2 ? [old] : { [op.key]: old }; // a computed key is an own property, even "__proto__"
    }
  });
}
