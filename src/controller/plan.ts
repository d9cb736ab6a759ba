/**
 * What one reconcile pass must do: a pure function of (desired accounts, known secrets, now), as
 * ca/rotation.ts is for one certificate. The controller executes the plan; tests table it.
 */
import { refreshReason, RefreshReason, RotationPolicy } from '../ca/rotation';
import { AccountRef, accountKey } from '../pki/identity';

/** What the controller knows of one stored secret, without holding its key in memory. */
export interface KnownSecret extends AccountRef {
  /** The store's version, for compare-and-set. */
  version: number;
  notBefore?: Date;
  notAfter?: Date;
  rootCertPem: string;
  /** When the grace period starts (ms since the epoch), computed once; NaN without a parseable certificate. */
  refreshAt: number;
  /** When this version was written (ms since the epoch; NaN when unknown): the floor counts from it. */
  writtenAt: number;
}

export interface PlanInput {
  /** namespace -> service accounts that must have a secret. */
  desired: ReadonlyMap<string, ReadonlySet<string>>;
  /** accountKey -> the secret in the store. */
  known: ReadonlyMap<string, KnownSecret>;
  /** accountKey -> since when a known secret's account has been gone (ms). */
  goneSince: ReadonlyMap<string, number>;
  now: number;
  rootCertPem: string;
  rotation: RotationPolicy;
  deleteDelayMs: number;
  /**
   * No secret is re-issued for expiring sooner than this after it was written, whatever the
   * settings: a pass can never re-issue what it has just issued.
   */
  minReissueIntervalMs: number;
}

export interface Plan {
  create: AccountRef[];
  refresh: Array<{ known: KnownSecret; reason: RefreshReason }>;
  delete: KnownSecret[];
  /** The gone-since clock of every known secret whose account is gone (the input's, carried on). */
  goneSince: Map<string, number>;
  /** Secrets due for refresh but written less than minReissueIntervalMs ago: held back. */
  held: number;
  /** Deletions waiting for the delete delay. */
  pendingDeletes: number;
  /** When the next pass is due (ms; Infinity when nothing is scheduled). */
  nextWakeAt: number;
}

export function planReconcile(input: PlanInput): Plan {
  const { desired, known, now, rootCertPem, rotation } = input;
  const plan: Plan = { create: [], refresh: [], delete: [], goneSince: new Map(), held: 0, pendingDeletes: 0, nextWakeAt: Infinity };
  const wake = (at: number) => {
    if (at < plan.nextWakeAt) plan.nextWakeAt = at;
  };
  let matched = 0;
  for (const [namespace, accounts] of desired) {
    for (const serviceAccount of accounts) {
      const k = known.get(accountKey({ namespace, serviceAccount }));
      if (!k) {
        plan.create.push({ namespace, serviceAccount });
        continue;
      }
      matched++;
      // Most secrets are current: two comparisons and no allocation.
      if (k.refreshAt > now && k.rootCertPem === rootCertPem) {
        wake(k.refreshAt);
        continue;
      }
      const reason = refreshReason(k, rootCertPem, new Date(now), rotation);
      if (!reason) continue;
      // Only 'expiring' can recur on the certificate just issued; another root or an unparseable one cannot.
      const floorEnds = reason === 'expiring' ? k.writtenAt + input.minReissueIntervalMs : -Infinity;
      if (floorEnds > now) {
        plan.held++;
        wake(floorEnds);
        continue;
      }
      plan.refresh.push({ known: k, reason });
    }
  }
  if (known.size > matched) {
    for (const [key, k] of known) {
      if (desired.get(k.namespace)?.has(k.serviceAccount)) continue;
      const since = input.goneSince.get(key) ?? now;
      plan.goneSince.set(key, since);
      if (now - since >= input.deleteDelayMs) plan.delete.push(k);
      else {
        plan.pendingDeletes++;
        wake(since + input.deleteDelayMs);
      }
    }
  }
  return plan;
}
