/** Istio's tie-break among policies of one scope: the oldest wins (creationTimestamp, then name, then namespace). */
import { namespaceOf, type PolicyDocument } from './documents';
import { parseTimestamp } from './names';

/** A document without a timestamp counts as oldest, as Istio's zero time does. */
function createdAt(doc: PolicyDocument): number {
  const ts = doc.metadata.creationTimestamp;
  return (ts === undefined ? undefined : parseTimestamp(ts)) ?? -Infinity;
}

/** Negative when `a` takes precedence over `b`. */
export function olderFirst(a: PolicyDocument, b: PolicyDocument): number {
  const ta = createdAt(a);
  const tb = createdAt(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return compareText(a.metadata.name, b.metadata.name) || compareText(namespaceOf(a) ?? '', namespaceOf(b) ?? '') || compareText(a.kind, b.kind);
}

/** The document that takes precedence, or undefined for none. */
export function oldest<D extends PolicyDocument>(docs: readonly D[]): D | undefined {
  let best: D | undefined;
  for (const d of docs) if (best === undefined || olderFirst(d, best) < 0) best = d;
  return best;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
