import type { JsonValue } from '../../common/json';

/**
 * Block-style YAML for a JSON value (what Envoy's --config-yaml and people read). Strings are
 * always double-quoted with JSON escapes, which YAML reads the same, so no value changes type.
 */
export function toYaml(value: JsonValue): string {
  const lines: string[] = [];
  emit(value, 0, lines, '');
  return lines.join('\n') + '\n';
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_.\-/]*$/;
const key = (k: string) => (PLAIN_KEY.test(k) && !/^(true|false|null|yes|no|on|off|y|n|~)$/i.test(k) ? k : JSON.stringify(k));
const scalar = (v: null | boolean | number | string) => (typeof v === 'string' ? JSON.stringify(v) : String(v));
const isEmptyCollection = (v: JsonValue) => (Array.isArray(v) ? v.length === 0 : typeof v === 'object' && v !== null && Object.keys(v).length === 0);
const inline = (v: JsonValue): string | undefined => {
  if (v === null || typeof v !== 'object') return scalar(v);
  if (isEmptyCollection(v)) return Array.isArray(v) ? '[]' : '{}';
  return undefined;
};

/** Writes `value` with `prefix` (a key or a list dash) on its first line, nested at `indent`. */
function emit(value: JsonValue, indent: number, lines: string[], prefix: string): void {
  const pad = ' '.repeat(indent);
  const flat = inline(value);
  if (flat !== undefined) {
    lines.push(prefix ? `${prefix} ${flat}` : `${pad}${flat}`);
    return;
  }
  if (prefix) lines.push(prefix);
  if (Array.isArray(value)) {
    for (const item of value) {
      const itemFlat = inline(item);
      if (itemFlat !== undefined) {
        lines.push(`${pad}- ${itemFlat}`);
      } else if (Array.isArray(item)) {
        emit(item, indent + 2, lines, `${pad}-`);
      } else {
        // a mapping inside a list: its first key shares the dash's line
        const sub: string[] = [];
        emit(item, indent + 2, sub, '');
        sub[0] = `${pad}- ${sub[0].slice(indent + 2)}`;
        lines.push(...sub);
      }
    }
    return;
  }
  for (const [k, v] of Object.entries(value as Record<string, JsonValue>)) {
    emit(v, indent + 2, lines, `${pad}${key(k)}:`);
  }
}
