/**
 * `citadel policy apply|delete` on a store's policy set: documents merged by kind/namespace/name
 * (create or replace, as kubectl apply does), each keeping the creationTimestamp of its first
 * apply (it decides "oldest wins"), written by compare-and-set and retried on a concurrent change,
 * so that no writer's documents are lost.
 */
import { isDeepStrictEqual } from 'node:util';
import { Backoff, sleep } from '../common/backoff';
import { ConflictError, UserError } from '../common/errors';
import { fromCanonical, toCanonical, withCreationTimestamp, type CanonicalPolicy, type PolicyDocument, type PolicyKind } from '../mesh/policy';
import type { Store } from './store';

export type ApplyOutcome = 'created' | 'configured' | 'unchanged';

export interface AppliedPolicy {
  /** As stored: with its creationTimestamp. */
  readonly document: PolicyDocument;
  readonly outcome: ApplyOutcome;
}

export interface ApplyResult {
  /** In the order given. */
  readonly applied: readonly AppliedPolicy[];
  /** The set's version after the apply (unchanged when nothing changed, or on a dry run). */
  readonly version: number;
  /** Reads of the set it took: more than one when another writer got in between. */
  readonly attempts: number;
}

/** A document named on `policy delete`: a MeshPolicy has no namespace. */
export interface PolicyRef {
  readonly kind: PolicyKind;
  readonly namespace?: string;
  readonly name: string;
}

export interface DeleteResult {
  readonly deleted: readonly PolicyRef[];
  readonly version: number;
}

export interface ChangeOptions {
  /** The clock that stamps new documents. */
  now?: () => Date;
  /** Compute and report, write nothing. */
  dryRun?: boolean;
  /** Compare-and-set attempts before giving up; default 8. */
  attempts?: number;
}

const DEFAULT_ATTEMPTS = 8;

/** Merges `documents` into the stored set, all or nothing; writes only when something changed. */
export function applyPolicies(store: Store, documents: readonly PolicyDocument[], opts: ChangeOptions = {}): Promise<ApplyResult> {
  const now = opts.now ?? (() => new Date());
  return withRetries(store, opts, (current, version, attempts) => {
    const { set, applied } = mergePolicies(current, documents, now());
    const changed = applied.some((a) => a.outcome !== 'unchanged');
    return { set: changed && !opts.dryRun ? set : undefined, result: (v) => ({ applied, version: v ?? version, attempts }) };
  });
}

/** Removes the named documents, all or nothing: one that is not there is a UserError and nothing changes. */
export function deletePolicies(store: Store, refs: readonly PolicyRef[], opts: ChangeOptions = {}): Promise<DeleteResult> {
  return withRetries(store, opts, (current, version) => {
    const wanted = new Set(refs.map(refKey));
    const present = new Set(current.map(storedKey));
    const missing = refs.filter((r) => !present.has(refKey(r)));
    if (missing.length > 0) {
      throw new UserError(`there is no ${missing.map(describeRef).join(', no ')} in ${store.url}; nothing deleted (\`citadel policy get -A\` lists what there is)`);
    }
    const set = current.filter((c) => !wanted.has(storedKey(c)));
    return { set: opts.dryRun ? undefined : set, result: (v) => ({ deleted: refs, version: v ?? version }) };
  });
}

/**
 * The pure merge: the new set (sorted by kind, namespace, name) and what happened to each
 * document. A new document keeps a creationTimestamp it brings (a set copied from elsewhere
 * keeps its order), else gets `now`; a replaced one keeps the stored one.
 */
export function mergePolicies(current: readonly CanonicalPolicy[], documents: readonly PolicyDocument[], now: Date): { set: CanonicalPolicy[]; applied: AppliedPolicy[] } {
  const byKey = new Map(current.map((c) => [storedKey(c), c]));
  const applied: AppliedPolicy[] = [];
  for (const doc of documents) {
    const key = refKey(refOf(doc));
    const stored = byKey.get(key);
    if (stored === undefined) {
      const document = doc.metadata.creationTimestamp === undefined ? withCreationTimestamp(doc, now) : doc;
      byKey.set(key, toCanonical(document));
      applied.push({ document, outcome: 'created' });
      continue;
    }
    const document = withTimestamp(doc, stored.metadata.creationTimestamp);
    const canonical = toCanonical(document);
    const same = isDeepStrictEqual(canonical, stored);
    if (!same) byKey.set(key, canonical);
    applied.push({ document, outcome: same ? 'unchanged' : 'configured' });
  }
  const set = [...byKey.entries()].sort(([a], [b]) => compareKeys(a, b)).map(([, c]) => c);
  return { set, applied };
}

/** The stored set as typed documents, each checked again (the store is a boundary too). */
export async function readPolicies(store: Store): Promise<{ documents: PolicyDocument[]; version: number }> {
  const { documents, version } = await store.getPolicies();
  return { documents: documents.map((c) => fromCanonical(c, `${store.url} policy ${storedKey(c)}`)), version };
}

/** `peerauthentication prod/api`, `meshpolicy default`: how the CLI names a document. */
export function describeRef(ref: PolicyRef): string {
  return `${ref.kind.toLowerCase()} ${ref.namespace === undefined ? ref.name : `${ref.namespace}/${ref.name}`}`;
}

export function refOf(doc: PolicyDocument): PolicyRef {
  return doc.kind === 'MeshPolicy' ? { kind: doc.kind, name: doc.metadata.name } : { kind: doc.kind, namespace: doc.metadata.namespace, name: doc.metadata.name };
}

interface Attempt<R> {
  /** The set to write, or undefined to write nothing. */
  readonly set: CanonicalPolicy[] | undefined;
  /** The result, given the new version when something was written. */
  readonly result: (version: number | undefined) => R;
}

async function withRetries<R>(store: Store, opts: ChangeOptions, decide: (current: CanonicalPolicy[], version: number, attempts: number) => Attempt<R>): Promise<R> {
  const attempts = opts.attempts ?? DEFAULT_ATTEMPTS;
  const backoff = new Backoff({ initialMs: 20, maxMs: 500 });
  for (let attempt = 1; ; attempt++) {
    const { documents, version } = await store.getPolicies();
    const { set, result } = decide(documents, version, attempt);
    if (set === undefined) return result(undefined);
    try {
      return result(await store.putPolicies(set, version));
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      if (attempt >= attempts) throw new UserError(`the policy set in ${store.url} changed under us ${attempts} times (other writers at work); nothing changed: retry`);
    }
    await sleep(backoff.next());
  }
}

/** `Kind/namespace/name`, or `Kind/name` for a MeshPolicy: policyKey's form, for stored and named documents alike. */
function refKey(ref: PolicyRef): string {
  return ref.namespace === undefined ? `${ref.kind}/${ref.name}` : `${ref.kind}/${ref.namespace}/${ref.name}`;
}

function storedKey(c: CanonicalPolicy): string {
  const { name, namespace } = c.metadata;
  if (typeof name !== 'string' || (namespace !== undefined && typeof namespace !== 'string')) {
    throw new Error(`the stored policy set holds a ${c.kind} without a metadata.name: it was not written by citadel`);
  }
  return namespace === undefined ? `${c.kind}/${name}` : `${c.kind}/${namespace}/${name}`;
}

/** Kind, then namespace (a MeshPolicy's none first), then name. */
function compareKeys(a: string, b: string): number {
  const [ka, ...ra] = a.split('/');
  const [kb, ...rb] = b.split('/');
  if (ka !== kb) return ka < kb ? -1 : 1;
  const pa = ra.length === 1 ? ['', ...ra] : ra;
  const pb = rb.length === 1 ? ['', ...rb] : rb;
  for (let i = 0; i < 2; i++) if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
  return 0;
}

function withTimestamp<D extends PolicyDocument>(doc: D, stored: unknown): D {
  const { creationTimestamp: _given, ...rest } = doc.metadata;
  return { ...doc, metadata: typeof stored === 'string' ? { ...rest, creationTimestamp: stored } : rest };
}
