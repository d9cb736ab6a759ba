/** Reads raw values against Istio's schema, field by field, recording each problem at its path. */
import { fieldPath, type Issues } from './issues';
import { describeRaw, INVALID, isRawList, isRawMap, type Raw, type RawMap } from './raw-value';
import { quote } from './quote';

/** A field Istio defines and citadel does not act on: its type is checked, its presence reported. */
export interface IgnoredField {
  readonly why: string;
  readonly check: (value: Raw, path: string, issues: Issues) => void;
}

export interface Schema {
  /** How messages name the object: `PeerAuthentication spec`. */
  readonly what: string;
  readonly fields: readonly string[];
  readonly ignored?: Readonly<Record<string, IgnoredField>>;
}

export function ignoredObject(why: string): IgnoredField {
  return { why, check: (v, p, i) => void asMap(v, p, i) };
}

export function ignoredList(why: string): IgnoredField {
  return { why, check: (v, p, i) => void asList(v, p, i) };
}

export function ignoredString(why: string): IgnoredField {
  return { why, check: (v, p, i) => void asString(v, p, i) };
}

export function ignoredBoolean(why: string): IgnoredField {
  return { why, check: (v, p, i) => void asBoolean(v, p, i) };
}

export function ignoredStringList(why: string): IgnoredField {
  return { why, check: (v, p, i) => void asStringList(v, p, i) };
}

export function ignoredEnum(values: readonly string[], why: string): IgnoredField {
  return { why, check: (v, p, i) => void asEnum(v, p, i, values) };
}

/** Any value: metadata that Kubernetes writes and citadel keeps its own version of. */
export function ignoredAny(why: string): IgnoredField {
  return { why, check: () => undefined };
}

/** An object whose keys have been checked against its schema. */
export class ObjectReader {
  constructor(
    readonly map: RawMap,
    readonly path: string,
    readonly issues: Issues,
  ) {}

  /** Present and not null. */
  has(key: string): boolean {
    const v = this.map.get(key);
    return v !== undefined && v !== null;
  }

  /** Present, even as null (`mtls:` in YAML). */
  hasKey(key: string): boolean {
    return this.map.has(key);
  }

  at(key: string): string {
    return fieldPath(this.path, key);
  }

  /** The value, or undefined when absent or null (proto3 JSON: null is the default). */
  raw(key: string): Raw | undefined {
    const v = this.map.get(key);
    return v === null ? undefined : v;
  }

  string(key: string, required = false): string | undefined {
    return this.read(key, required, asString);
  }

  boolean(key: string): boolean | undefined {
    return this.read(key, false, asBoolean);
  }

  integer(key: string, min: number, max: number, required = false): number | undefined {
    return this.read(key, required, (v, p, i) => asInteger(v, p, i, min, max));
  }

  enumOf<T extends string>(key: string, values: readonly T[], required = false): T | undefined {
    return this.read(key, required, (v, p, i) => asEnum(v, p, i, values));
  }

  list(key: string): readonly Raw[] | undefined {
    return this.read(key, false, asList);
  }

  stringList(key: string): readonly string[] | undefined {
    return this.read(key, false, asStringList);
  }

  object(key: string, schema: Schema, required = false): ObjectReader | undefined {
    return this.read(key, required, (v, p, i) => asObject(v, p, i, schema));
  }

  /** A map of string to string, entries in source order. */
  stringMap(key: string): [string, string][] | undefined {
    return this.read(key, false, asStringMap);
  }

  private read<T>(key: string, required: boolean, as: (v: Raw, path: string, issues: Issues) => T | undefined): T | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (required) this.issues.error(this.at(key), 'is required');
      return undefined;
    }
    return as(v, this.at(key), this.issues);
  }
}

export function asObject(value: Raw, path: string, issues: Issues, schema: Schema): ObjectReader | undefined {
  const map = asMap(value, path, issues);
  if (map === undefined) return undefined;
  for (const [key, v] of map) {
    const at = fieldPath(path, key);
    if (schema.fields.includes(key)) continue;
    // Own keys only: a key named __proto__ must not find Object.prototype.
    const ignored = schema.ignored !== undefined && Object.hasOwn(schema.ignored, key) ? schema.ignored[key] : undefined;
    if (ignored !== undefined) {
      if (v === null) continue;
      ignored.check(v, at, issues);
      issues.ignored(at, ignored.why);
      continue;
    }
    issues.error(at, unknownFieldMessage(key, schema));
  }
  return new ObjectReader(map, path, issues);
}

export function asMap(value: Raw, path: string, issues: Issues): RawMap | undefined {
  if (value === INVALID) return undefined;
  if (isRawMap(value)) return value;
  issues.error(path, `expected a mapping, got ${describeRaw(value)}`);
  return undefined;
}

export function asList(value: Raw, path: string, issues: Issues): readonly Raw[] | undefined {
  if (value === INVALID) return undefined;
  if (isRawList(value)) return value;
  issues.error(path, `expected a list, got ${describeRaw(value)}`);
  return undefined;
}

export function asString(value: Raw, path: string, issues: Issues): string | undefined {
  if (value === INVALID) return undefined;
  if (typeof value === 'string') return value;
  issues.error(path, `expected a string, got ${describeRaw(value)}`);
  return undefined;
}

export function asBoolean(value: Raw, path: string, issues: Issues): boolean | undefined {
  if (value === INVALID) return undefined;
  if (typeof value === 'boolean') return value;
  issues.error(path, `expected true or false, got ${describeRaw(value)}`);
  return undefined;
}

export function asInteger(value: Raw, path: string, issues: Issues, min: number, max: number): number | undefined {
  if (value === INVALID) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    issues.error(path, `expected an integer from ${min} to ${max}, got ${describeRaw(value)}`);
    return undefined;
  }
  if (value < min || value > max) {
    issues.error(path, `${value} is out of range (${min} to ${max})`);
    return undefined;
  }
  return value;
}

export function asEnum<T extends string>(value: Raw, path: string, issues: Issues, values: readonly T[]): T | undefined {
  if (value === INVALID) return undefined;
  if (typeof value === 'string') {
    if ((values as readonly string[]).includes(value)) return value as T;
    issues.error(path, `${quote(value)} is not one of ${values.join(', ')}`);
    return undefined;
  }
  issues.error(path, `expected one of ${values.join(', ')}, got ${describeRaw(value)}`);
  return undefined;
}

export function asStringList(value: Raw, path: string, issues: Issues): readonly string[] | undefined {
  const list = asList(value, path, issues);
  if (list === undefined) return undefined;
  const out: string[] = [];
  list.forEach((item, i) => {
    const s = asString(item, `${path}[${i}]`, issues);
    if (s !== undefined) out.push(s);
  });
  return out.length === list.length ? out : undefined;
}

export function asStringMap(value: Raw, path: string, issues: Issues): [string, string][] | undefined {
  const map = asMap(value, path, issues);
  if (map === undefined) return undefined;
  const out: [string, string][] = [];
  for (const [key, v] of map) {
    const s = asString(v, fieldPath(path, key), issues);
    if (s !== undefined) out.push([key, s]);
  }
  return out.length === map.size ? out : undefined;
}

/** `unknown field; PeerAuthentication spec has selector, mtls, portLevelMtls (did you mean portLevelMtls?)`. */
function unknownFieldMessage(key: string, schema: Schema): string {
  const known = [...schema.fields, ...Object.keys(schema.ignored ?? {})];
  const near = known.find((k) => k.toLowerCase() === key.toLowerCase()) ?? known.find((k) => editDistance(k, key) <= 2);
  const hint = near === undefined ? '' : ` (did you mean ${near}?)`;
  return `unknown field; ${schema.what} has ${known.join(', ')}${hint}`;
}

/** Levenshtein distance, bounded: only short field names are compared. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 40 || b.length > 40) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
