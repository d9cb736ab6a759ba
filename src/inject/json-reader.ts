import { MarathonParseError } from '../marathon/model';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';

/**
 * Typed reads of one JSON object of a Marathon definition, failing with the JSON path in
 * Marathon's notation (`/container/volumes(0)/mode`). It remembers which keys were read, so a
 * conversion can name every field it did not carry over (leftovers()).
 */
export class JsonReader {
  private readonly used = new Set<string>();
  private readonly children: JsonReader[] = [];

  constructor(readonly json: JsonObject, readonly path: string) {}

  static of(v: JsonValue | undefined, path: string): JsonReader {
    if (!isJsonObject(v)) throw new MarathonParseError(path || '/', `expected an object, got ${kindOf(v)}`);
    return new JsonReader(v, path);
  }

  at(key: string): string {
    return `${this.path}/${key}`;
  }

  fail(key: string, reason: string): never {
    throw new MarathonParseError(key ? this.at(key) : this.path || '/', reason);
  }

  /** Present and not null. */
  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  /** The value as it is (marks the key read). */
  raw(key: string): JsonValue | undefined {
    this.used.add(key);
    const v = this.json[key];
    return v === null ? undefined : v;
  }

  /** Marks keys read without looking at them (fields a caller handles as a whole or on purpose ignores). */
  consume(...keys: string[]): void {
    for (const k of keys) this.used.add(k);
  }

  optStr(key: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.fail(key, `expected a string, got ${kindOf(v)}`);
    return v;
  }

  str(key: string): string {
    const v = this.optStr(key);
    if (v === undefined) this.fail(key, 'is missing');
    return v;
  }

  optNum(key: string): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, `expected a number, got ${kindOf(v)}`);
    return v;
  }

  optInt(key: string): number | undefined {
    const v = this.optNum(key);
    if (v !== undefined && !Number.isInteger(v)) this.fail(key, `expected a whole number, got ${v}`);
    return v;
  }

  optBool(key: string): boolean | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.fail(key, `expected true or false, got ${kindOf(v)}`);
    return v;
  }

  /** A string map (labels); every value must be a string. */
  stringMap(key: string): Record<string, string> {
    const r = this.optObj(key);
    if (!r) return {};
    const out: Record<string, string> = {};
    for (const k of Object.keys(r.json)) out[k] = r.str(k);
    return out;
  }

  optObj(key: string): JsonReader | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    const child = JsonReader.of(v, this.at(key));
    this.children.push(child);
    return child;
  }

  /** An array (missing = empty); `each` reads one element at its path. */
  array<T>(key: string, each: (v: JsonValue, path: string) => T): T[] {
    const v = this.raw(key);
    if (v === undefined) return [];
    if (!Array.isArray(v)) this.fail(key, `expected an array, got ${kindOf(v)}`);
    return v.map((item, i) => each(item, `${this.at(key)}(${i})`));
  }

  /** An array of objects, each as a reader. */
  objects(key: string): JsonReader[] {
    return this.array(key, (item, path) => {
      const child = JsonReader.of(item, path);
      this.children.push(child);
      return child;
    });
  }

  strings(key: string): string[] {
    return this.array(key, (item, path) => {
      if (typeof item !== 'string') throw new MarathonParseError(path, `expected a string, got ${kindOf(item)}`);
      return item;
    });
  }

  /**
   * Paths of the keys nobody read, here and in the objects read through this reader, leaving
   * out those whose value says nothing (null, false, "", [], {}).
   */
  leftovers(): string[] {
    const out: string[] = [];
    for (const [k, v] of Object.entries(this.json)) {
      if (!this.used.has(k) && !isEmpty(v)) out.push(this.at(k));
    }
    for (const c of this.children) out.push(...c.leftovers());
    return out;
  }
}

export function isEmpty(v: JsonValue | undefined): boolean {
  return v === undefined || v === null || v === false || v === '' || (Array.isArray(v) && v.length === 0) || (isJsonObject(v) && Object.keys(v).length === 0);
}

export function kindOf(v: JsonValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v).slice(0, 40)}`;
}
