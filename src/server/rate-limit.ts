/** Per-caller token buckets: `ratePerSecond` refill, `burst` capacity. */
export interface RateLimitOptions {
  /** Sustained requests per second per caller; 0 or less disables the limit. */
  ratePerSecond: number;
  /** Requests a caller may make at once after being idle. */
  burst: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { ratePerSecond: 50, burst: 200 };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private sweptAt = 0;

  constructor(private readonly opts: RateLimitOptions, private readonly now: () => number = () => performance.now()) {}

  /** Takes one token from the caller's bucket; false when it is empty. */
  take(caller: string): boolean {
    const { ratePerSecond, burst } = this.opts;
    if (!(ratePerSecond > 0)) return true;
    const t = this.now();
    let b = this.buckets.get(caller);
    if (!b) {
      b = { tokens: burst, at: t };
      this.buckets.set(caller, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * ratePerSecond);
      b.at = t;
    }
    if (t - this.sweptAt > 60_000) this.sweep(t);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets full buckets, so that the map holds only recent callers. */
  private sweep(t: number): void {
    this.sweptAt = t;
    const { ratePerSecond, burst } = this.opts;
    for (const [k, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * ratePerSecond >= burst) this.buckets.delete(k);
  }
}
