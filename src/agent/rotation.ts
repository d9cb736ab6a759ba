/**
 * When to renew a certificate: at `ratio` of its lifetime (Istio: 50%), moved earlier by up to
 * `jitter` of the lifetime so that many nodes started together do not renew together.
 * A pure function of the certificate's validity and a random draw.
 */
export function renewalTime(notBefore: Date, notAfter: Date, ratio = 0.5, jitter = 0.01, random = Math.random): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return new Date(notBefore.getTime() + lifetime * Math.max(0, ratio - jitter * random()));
}

export function shouldRenew(notBefore: Date, notAfter: Date, now: Date, ratio = 0.5): boolean {
  return now >= renewalTime(notBefore, notAfter, ratio, 0);
}
