/** How a store keeps the policy set: one JSON value, the same bytes in a file and in a znode. */
import { UserError } from '../common/errors';
import type { CanonicalPolicy } from '../mesh/policy';

/** ZooKeeper refuses a znode over 1 MB (jute.maxbuffer); the rest is headroom for the request around it. */
export const MAX_POLICY_SET_BYTES = 900 * 1024;

const FORMAT = 1;

/** The stored bytes of a set; a set over the limit is refused in every store, so any store's set fits any other. */
export function encodePolicySet(documents: readonly CanonicalPolicy[]): Buffer {
  const data = Buffer.from(`${JSON.stringify({ v: FORMAT, documents })}\n`);
  if (data.length > MAX_POLICY_SET_BYTES) {
    throw new UserError(
      `the policy set would take ${kib(data.length)} KB (${documents.length} documents); a store keeps at most ${kib(MAX_POLICY_SET_BYTES)} KB (ZooKeeper's znode limit is 1 MB): delete policies that are no longer needed`,
    );
  }
  return data;
}

/** The documents of a stored set, checked for shape only (fromCanonical checks each one in full); `where` names the file or znode. */
export function decodePolicySet(where: string, data: Buffer): CanonicalPolicy[] {
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    throw new Error(`${where} does not hold JSON: it was not written by citadel`);
  }
  const set = value as { v?: unknown; documents?: unknown };
  if (!isObject(value) || set.v !== FORMAT || !Array.isArray(set.documents)) {
    throw new Error(`${where} does not hold a citadel policy set (format v${FORMAT})`);
  }
  return set.documents.map((d, i) => {
    const doc = d as Partial<Record<keyof CanonicalPolicy, unknown>>;
    if (!isObject(d) || typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string' || !isObject(doc.metadata) || !isObject(doc.spec)) {
      throw new Error(`${where}: document ${i + 1} is not a policy document (apiVersion, kind, metadata, spec)`);
    }
    return d as CanonicalPolicy;
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kib(bytes: number): number {
  return Math.ceil(bytes / 1024);
}
