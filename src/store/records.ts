/**
 * How both stores serialise the small records beside the secrets: join tokens, node records and
 * evictions, one JSON document each. Each is parsed and checked at the boundary, so a document
 * written by something else is named, never half-read.
 */
import { checkHost } from '../pki/identity';
import type { JoinTokenRecord, NodeEviction, NodeRecord } from './store';

function parseObject(where: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${where} does not hold JSON written by citadel`);
  return value as Record<string, unknown>;
}

function strings<K extends string>(where: string, what: string, r: Record<string, unknown>, keys: readonly K[]): Record<K, string> {
  const out = {} as Record<K, string>;
  for (const k of keys) {
    const v = r[k];
    if (typeof v !== 'string') throw new Error(`${where} does not hold a ${what} (no "${k}")`);
    out[k] = v;
  }
  return out;
}

const TOKEN_KEYS = ['hash', 'host', 'expiresAt', 'createdAt'] as const;
const NODE_KEYS = ['host', 'serialNumber', 'issuedAt', 'notAfter', 'lastContact'] as const;
const EVICTION_KEYS = ['host', 'evictedAt', 'reason'] as const;

export function decodeJoinTokenRecord(where: string, text: string): JoinTokenRecord {
  return strings(where, 'join token record', parseObject(where, text), TOKEN_KEYS);
}

export function decodeNodeRecord(where: string, text: string): NodeRecord {
  return strings(where, 'node record', parseObject(where, text), NODE_KEYS);
}

export function decodeNodeEviction(where: string, text: string): NodeEviction {
  return strings(where, 'node eviction', parseObject(where, text), EVICTION_KEYS);
}

/** The one document format of each record: its fields, in a fixed order. */
export function encodeRecord<T extends JoinTokenRecord | NodeRecord | NodeEviction>(record: T): string {
  return JSON.stringify(record);
}

/** A host as a file or znode name (checked: it becomes a path segment). */
export function hostSegment(host: string): string {
  const problem = checkHost(host);
  if (problem) throw new Error(problem);
  return host;
}

/** Evictions are immutable, one per `<host>@<epoch ms>`: a watch on their parent sees every new one. */
export function evictionName(e: NodeEviction): string {
  const at = Date.parse(e.evictedAt);
  if (!Number.isFinite(at)) throw new Error(`eviction of ${e.host}: "${e.evictedAt}" is not a time`);
  return `${hostSegment(e.host)}@${at}`;
}

/** Whether `name` is an eviction's file or znode name. */
export function isEvictionName(name: string): boolean {
  return /^[A-Za-z0-9][-A-Za-z0-9.]*@\d+$/.test(name);
}

export function checkTokenHash(hash: string): string {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`join token hash must be 64 lowercase hex digits, got "${hash}"`);
  return hash;
}
