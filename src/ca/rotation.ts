/**
 * When a Citadel secret must be refreshed: a pure function of the certificate's validity, the
 * CA's current root and the clock (no timers here; the controller schedules from the answer).
 */

export interface RotationPolicy {
  /** `--workload-cert-grace-period-ratio`: refresh when less than this share of the lifetime is left. */
  gracePeriodRatio: number;
  /** `--workload-cert-min-grace-period`: ...or less than this, whichever is longer. */
  minGracePeriodMs: number;
  /**
   * How far notBefore is back-dated for clock skew (the CA's clockSkewMs). The lifetime the grace
   * period is a share of is the one asked for, from issuance to notAfter, not the back-dated one:
   * with a 4 s TTL and 60 s of back-dating, half of 64 s would exceed the whole lifetime.
   */
  clockSkewMs?: number;
}

export const DEFAULT_ROTATION_POLICY: RotationPolicy = { gracePeriodRatio: 0.5, minGracePeriodMs: 10 * 60_000, clockSkewMs: 60_000 };

/** The lifetime that was asked for: from issuance (notBefore plus the back-dating) to notAfter. */
export function askedLifetimeMs(notBefore: Date, notAfter: Date, policy: RotationPolicy): number {
  return Math.max(0, notAfter.getTime() - notBefore.getTime() - (policy.clockSkewMs ?? 0));
}

/** Citadel's grace period: max(ratio x lifetime, min grace), on the lifetime asked for. */
export function gracePeriodMs(notBefore: Date, notAfter: Date, policy: RotationPolicy): number {
  return Math.max(policy.gracePeriodRatio * askedLifetimeMs(notBefore, notAfter, policy), policy.minGracePeriodMs);
}

/** The moment a certificate enters its grace period and must be replaced. */
export function refreshTime(notBefore: Date, notAfter: Date, policy: RotationPolicy): Date {
  return new Date(notAfter.getTime() - gracePeriodMs(notBefore, notAfter, policy));
}

/**
 * Today's Istio renewal point for a certificate its holder renews itself (a node certificate,
 * the CA's own server certificate): at `ratio` of the lifetime, moved earlier by up to `jitter`
 * of the lifetime so that many holders started together do not renew together.
 */
export function renewalTime(notBefore: Date, notAfter: Date, ratio = 0.5, jitter = 0.01, random = Math.random): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return new Date(notBefore.getTime() + lifetime * Math.max(0, ratio - jitter * random()));
}

export type RefreshReason = 'expiring' | 'root-changed' | 'unparseable';

export interface SecretValidity {
  notBefore?: Date;
  notAfter?: Date;
  rootCertPem: string;
}

/** Why a secret needs a new certificate now, or undefined when it is good. */
export function refreshReason(secret: SecretValidity, currentRootPem: string, now: Date, policy: RotationPolicy): RefreshReason | undefined {
  if (!secret.notBefore || !secret.notAfter || Number.isNaN(secret.notBefore.getTime()) || Number.isNaN(secret.notAfter.getTime())) return 'unparseable';
  if (secret.rootCertPem !== currentRootPem) return 'root-changed';
  if (now >= refreshTime(secret.notBefore, secret.notAfter, policy)) return 'expiring';
  return undefined;
}

/**
 * A minimum grace period as long as the lifetime means a certificate is due for refresh the moment
 * it is issued: refused at start, as Citadel refused it.
 */
export function checkMinGracePeriod(minGracePeriodMs: number, ttlMs: number): string | undefined {
  if (minGracePeriodMs >= ttlMs) {
    return `--workload-cert-min-grace-period (${Math.round(minGracePeriodMs / 1000)}s) must be shorter than --workload-cert-ttl (${Math.round(ttlMs / 1000)}s), or every certificate would be refreshed as soon as it is issued`;
  }
  return undefined;
}

/** Citadel's check of the ratio flag: outside [0,1] is fatal, outside [0.2,0.8] deserves a warning. */
export function checkGracePeriodRatio(ratio: number): { fatal?: string; warning?: string } {
  if (!(ratio >= 0 && ratio <= 1)) return { fatal: `--workload-cert-grace-period-ratio ${ratio} must be within [0, 1]` };
  if (ratio < 0.2 || ratio > 0.8) return { warning: `--workload-cert-grace-period-ratio ${ratio} is outside the recommended [0.2, 0.8]` };
  return {};
}
