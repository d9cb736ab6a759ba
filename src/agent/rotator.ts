/**
 * The one rotation loop for anything with a not-after that its holder renews itself: the node
 * certificate, and each workload certificate the agent makes in SDS mode. When to renew is
 * `renewalTime` of ca/rotation.ts (half the lifetime, jittered); a failed renewal is retried with
 * capped exponential backoff and jitter until it succeeds or the rotator stops.
 */
import { renewalTime } from '../ca/rotation';
import { Backoff, BackoffOptions } from '../common/backoff';
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/log';

export interface Expiring {
  notBefore: Date;
  notAfter: Date;
}

export interface RotatorOptions<T extends Expiring> {
  /** What is rotated, for logs ("node certificate", "spiffe://.../ns/a/sa/b"). */
  what: string;
  renew(current: T): Promise<T>;
  /** After each successful renewal. */
  onRotated?(next: T): void;
  /** After each failed attempt, with whether the current one has expired meanwhile. */
  onFailure?(err: unknown, expired: boolean): void;
  /**
   * The lifetime that was asked for (--secret-ttl, --node-cert-ttl): the share is counted on it,
   * back from notAfter, because the CA back-dates notBefore for clock skew (a minute by default)
   * and that minute is no lifetime: with a 6 s TTL, half of 66 s is past before it is issued.
   */
  askedLifetimeMs?: number;
  /** Why an error is a refusal by the CA rather than an outage (logged as an error, not a warning), or undefined. */
  refusal?(err: unknown): string | undefined;
  backoff?: BackoffOptions;
  logger: Logger;
  now?: () => number;
  random?: () => number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class Rotator<T extends Expiring> {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly now: () => number;

  constructor(private value: T, private readonly opts: RotatorOptions<T>) {
    this.backoff = new Backoff({ initialMs: 500, maxMs: 30_000, ...opts.backoff });
    this.now = opts.now ?? Date.now;
    this.scheduleAt(this.renewalAt(value));
  }

  get current(): T {
    return this.value;
  }

  /** Takes a value obtained some other way (a node attested again) and rotates it from now on. */
  replace(next: T): void {
    if (this.stopped) return;
    this.value = next;
    this.backoff.reset();
    if (!this.running) this.scheduleAt(this.renewalAt(next));
  }

  /** Renews as soon as possible (a new root, a refused certificate); a renewal under way counts. */
  rotateNow(): Promise<void> {
    if (this.running) return this.running;
    clearTimeout(this.timer);
    return this.attempt();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Half the lifetime (jittered), the lifetime being the one asked for when the back-dated one is longer. */
  private renewalAt(v: T): number {
    const asked = this.opts.askedLifetimeMs;
    const start = asked !== undefined && asked > 0 ? Math.max(v.notBefore.getTime(), v.notAfter.getTime() - asked) : v.notBefore.getTime();
    return renewalTime(new Date(start), v.notAfter, 0.5, 0.01, this.opts.random).getTime();
  }

  private scheduleAt(at: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const delay = Math.max(0, Math.min(at - this.now(), MAX_TIMER_MS));
    // Beyond the timer's range: wake up at its end and look again.
    this.timer = setTimeout(() => (at - this.now() > 0 ? this.scheduleAt(at) : void this.attempt()), delay);
    this.timer.unref?.();
  }

  private attempt(): Promise<void> {
    this.running = (async () => {
      try {
        const next = await this.opts.renew(this.value);
        if (this.stopped) return;
        this.value = next;
        this.backoff.reset();
        this.opts.onRotated?.(next);
        this.scheduleAt(this.renewalAt(next));
      } catch (err) {
        if (this.stopped) return;
        const expired = this.value.notAfter.getTime() <= this.now();
        const delay = this.backoff.next();
        const refusal = this.opts.refusal?.(err);
        if (refusal) this.opts.logger.error(`the CA refuses to renew the ${this.opts.what}; retrying`, { refusal, expired, notAfter: this.value.notAfter.toISOString(), retryInMs: delay });
        else this.opts.logger[expired ? 'error' : 'warn'](`cannot renew the ${this.opts.what}; retrying`, { error: errorMessage(err), expired, notAfter: this.value.notAfter.toISOString(), retryInMs: delay });
        this.opts.onFailure?.(err, expired);
        this.scheduleAt(this.now() + delay);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
}
