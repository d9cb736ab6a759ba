/** `citadel policy get -o yaml|json`: documents in their canonical form, readable back by the parser. */
import { stringify } from 'yaml';
import { toCanonical } from './canonical';
import type { PolicyDocument } from './documents';

/** YAML documents separated by `---`; empty for no documents. */
export function formatPolicyYaml(docs: readonly PolicyDocument[]): string {
  return docs.map((d) => stringify(toCanonical(d), { lineWidth: 0 })).join('---\n');
}

/** One document as an object; several (or none) as a Kubernetes `List`, as kubectl prints them. */
export function formatPolicyJson(docs: readonly PolicyDocument[]): string {
  const value = docs.length === 1 ? toCanonical(docs[0]) : { apiVersion: 'v1', kind: 'List', items: docs.map(toCanonical) };
  return `${JSON.stringify(value, null, 2)}\n`;
}
