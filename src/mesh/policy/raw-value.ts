/** A parsed YAML/JSON value before it is checked against a schema: only JSON shapes, string keys. */
import type { Issues } from './issues';
import { fieldPath } from './issues';
import { quote } from './quote';

/** Stands where a value was unusable; its problem is already recorded, readers stay silent. */
export const INVALID: unique symbol = Symbol('invalid');

export type RawMap = ReadonlyMap<string, Raw>;
export type Raw = null | boolean | number | string | readonly Raw[] | RawMap | typeof INVALID;

/** Deeper than any Istio document; stops a hostile file before the stack does. */
const MAX_DEPTH = 64;

export function isRawMap(value: Raw): value is RawMap {
  return value instanceof Map;
}

export function isRawList(value: Raw): value is readonly Raw[] {
  return Array.isArray(value);
}

/** How a message names what was found: `a string ("abc")`, `a list`, `a mapping`. */
export function describeRaw(value: Raw): string {
  if (value === null) return 'null';
  if (value === INVALID) return 'an invalid value';
  if (typeof value === 'string') return `a string (${quote(value)})`;
  if (typeof value === 'number') return `a number (${value})`;
  if (typeof value === 'boolean') return `a boolean (${value})`;
  return isRawList(value) ? 'a list' : 'a mapping';
}

/**
 * Converts what `yaml` (with mapAsMap) or JSON.parse produced. Numbers as map keys become strings
 * (YAML `8080:`); other non-string keys, non-finite numbers and non-JSON values are errors.
 */
export function toRaw(value: unknown, path: string, issues: Issues, depth = 0): Raw {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    issues.error(path, `${value} is not a finite number`);
    return INVALID;
  }
  if (depth >= MAX_DEPTH) {
    issues.error(path, `nested deeper than ${MAX_DEPTH} levels`);
    return INVALID;
  }
  if (Array.isArray(value)) return value.map((item, i) => toRaw(item, `${path}[${i}]`, issues, depth + 1));
  if (value instanceof Map) return mapOf([...value.entries()], path, issues, depth);
  if (isPlainObject(value)) return mapOf(Object.entries(value), path, issues, depth);
  issues.error(path, `unsupported value (${describeForeign(value)}); use plain strings, numbers, lists and mappings`);
  return INVALID;
}

function mapOf(entries: [unknown, unknown][], path: string, issues: Issues, depth: number): RawMap {
  const out = new Map<string, Raw>();
  for (const [k, v] of entries) {
    const key = typeof k === 'string' ? k : typeof k === 'number' && Number.isFinite(k) ? String(k) : undefined;
    if (key === undefined) {
      issues.error(path, `a key is ${describeForeign(k)}; keys must be strings`);
      continue;
    }
    const at = fieldPath(path, key);
    if (out.has(key)) {
      issues.error(at, 'the key appears twice');
      continue;
    }
    out.set(key, toRaw(v, at, issues, depth + 1));
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describeForeign(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object of type ${(value.constructor as { name?: string } | undefined)?.name ?? 'unknown'}`;
  return `a ${typeof value}`;
}
