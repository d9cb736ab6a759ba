import { isJsonObject, type JsonValue } from '../common/json';

/**
 * A readable diff of two JSON values: one line per changed leaf, with its path in Marathon's
 * notation (`/containers(1)/image/id`), `-` for the old value and `+` for the new. Objects are
 * compared by key, arrays by position; a subtree present on one side only is listed leaf by leaf.
 */
export function jsonDiff(before: JsonValue | undefined, after: JsonValue | undefined, path = ''): string[] {
  if (before === undefined && after === undefined) return [];
  const bothObjects = isJsonObject(before) && isJsonObject(after);
  const bothArrays = Array.isArray(before) && Array.isArray(after);
  if (bothObjects) {
    const keys = [...Object.keys(before), ...Object.keys(after).filter((k) => !(k in before))];
    return keys.flatMap((k) => jsonDiff(before[k], after[k], `${path}/${k}`));
  }
  if (bothArrays) {
    const n = Math.max(before.length, after.length);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(...jsonDiff(before[i], after[i], `${path}(${i})`));
    return out;
  }
  if (before !== undefined && after !== undefined && JSON.stringify(before) === JSON.stringify(after)) return [];
  return [...leaves(before, path).map((l) => `- ${l}`), ...leaves(after, path).map((l) => `+ ${l}`)];
}

function leaves(v: JsonValue | undefined, path: string): string[] {
  if (v === undefined) return [];
  if (isJsonObject(v) && Object.keys(v).length > 0) return Object.entries(v).flatMap(([k, x]) => leaves(x, `${path}/${k}`));
  if (Array.isArray(v) && v.length > 0) return v.flatMap((x, i) => leaves(x, `${path}(${i})`));
  return [`${path || '/'}: ${JSON.stringify(v)}`];
}
