import { CertificateAuthority, SigningError } from '../ca/authority';
import { refreshReason, refreshTime, RefreshReason, RotationPolicy } from '../ca/rotation';
import { Backoff } from '../common/backoff';
import { forEachLimited } from '../common/concurrency';
import { ConflictError, errorMessage } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { parseCertificateDer } from '../pki/certificate';
import { parsePemBlocks } from '../pki/pem';
import { secretName, spiffeId, workloadIdentity } from '../pki/identity';
import { Secret, SECRET_TYPE, Store, StoredSecret } from '../store/store';
import { SecretControllerMetrics } from './metrics';
import type { Registry } from 'prom-client';

/** What the controller needs of the Marathon view. */
export interface AccountSource {
  /** namespace -> service accounts (including `default`) of the apps and pods in it; read-only. */
  desiredAccounts(): ReadonlyMap<string, ReadonlySet<string>>;
  onChange(listener: () => void): () => void;
}

export interface SecretControllerOptions {
  ca: CertificateAuthority;
  store: Store;
  accounts: AccountSource;
  rotation: RotationPolicy;
  /** Lifetime of the certificates it issues (default: the CA's --workload-cert-ttl). */
  certTtlMs?: number;
  /** Secrets of accounts that are gone are deleted after this long, so a redeploy does not churn. */
  deleteDelayMs?: number;
  /** Full re-read of the store and re-check of everything (Citadel: every minute). */
  resyncIntervalMs?: number;
  /** Only the elected leader writes; followers keep their cache warm. */
  isLeader?: () => boolean;
  /** Parallel secret writes. */
  concurrency?: number;
  logger?: Logger;
  registry?: Registry;
  now?: () => Date;
}

/** What the controller knows of one stored secret, without holding its key in memory. */
interface Known {
  namespace: string;
  name: string;
  serviceAccount: string;
  version: number;
  notBefore?: Date;
  notAfter?: Date;
  rootCertPem: string;
  /** When the grace period starts (ms since the epoch), computed once; NaN without a parseable certificate. */
  refreshAt: number;
}

export interface ReconcileResult {
  created: number;
  refreshed: number;
  deleted: number;
  failed: number;
  pendingDeletes: number;
}

const keyOf = (ns: string, name: string) => `${ns}/${name}`;

/**
 * Citadel's secret controller for Marathon: for every namespace with apps or pods, keeps
 * `istio.default` and `istio.<sa>` for each account they name. Creates what is missing,
 * refreshes at the grace period, on a root change or an unparseable certificate, recreates
 * deleted secrets, and deletes the secrets of accounts gone for longer than the delete delay.
 */
export class SecretController {
  private readonly known = new Map<string, Known>();
  private readonly goneSince = new Map<string, number>();
  private readonly log: Logger;
  private readonly metrics: SecretControllerMetrics;
  private readonly now: () => Date;
  private readonly deleteDelayMs: number;
  private readonly resyncIntervalMs: number;
  private readonly concurrency: number;
  private readonly isLeader: () => boolean;
  private running?: Promise<ReconcileResult>;
  private again = false;
  private wakeTimer?: NodeJS.Timeout;
  private resyncTimer?: NodeJS.Timeout;
  private needResync = true;
  private stopped = false;
  private readonly retry = new Backoff({ initialMs: 500, maxMs: 30_000 });
  private unsubscribe: Array<() => void> = [];
  /** Resolved after every finished pass; tests and the demo wait on it. */
  private passListeners = new Set<(r: ReconcileResult) => void>();

  constructor(private readonly opts: SecretControllerOptions) {
    this.log = opts.logger ?? silentLogger;
    this.metrics = new SecretControllerMetrics(opts.registry);
    this.now = opts.now ?? (() => new Date());
    this.deleteDelayMs = opts.deleteDelayMs ?? 60_000;
    this.resyncIntervalMs = opts.resyncIntervalMs ?? 60_000;
    this.concurrency = opts.concurrency ?? 256;
    this.isLeader = opts.isLeader ?? (() => true);
  }

  /** Reconciles once, then follows Marathon changes, store changes, rotation times and the resync timer. */
  async start(): Promise<ReconcileResult> {
    this.unsubscribe.push(this.opts.accounts.onChange(() => this.trigger()));
    this.unsubscribe.push(
      this.opts.store.watch((e) => {
        if (e.type === 'resync') this.needResync = true;
        else if (e.type === 'delete' && this.known.has(keyOf(e.namespace, e.name))) {
          // Deleted by someone else (our own deletes are forgotten before the event arrives).
          this.known.delete(keyOf(e.namespace, e.name));
        } else if (e.type === 'put') return; // ours, or another replica's: picked up on resync
        this.trigger();
      }),
    );
    this.resyncTimer = setInterval(() => {
      this.needResync = true;
      this.trigger();
    }, this.resyncIntervalMs);
    this.resyncTimer.unref?.();
    return this.reconcile();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const u of this.unsubscribe) u();
    clearInterval(this.resyncTimer);
    clearTimeout(this.wakeTimer);
    await this.running?.catch(() => undefined);
  }

  /** Asks for a pass soon; passes never overlap, and triggers during a pass coalesce into one more. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.reconcile().catch((err) => this.log.error('reconcile failed', { error: errorMessage(err) }));
  }

  /** Re-reads the whole store on the next pass (on becoming leader, after a reconnect). */
  resync(): void {
    this.needResync = true;
    this.trigger();
  }

  /** Waits for the next finished pass. */
  nextPass(): Promise<ReconcileResult> {
    return new Promise((resolve) => {
      const l = (r: ReconcileResult) => {
        this.passListeners.delete(l);
        resolve(r);
      };
      this.passListeners.add(l);
    });
  }

  reconcile(): Promise<ReconcileResult> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.pass().finally(() => {
      this.running = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.trigger();
      }
    });
    return this.running;
  }

  private async pass(): Promise<ReconcileResult> {
    const end = this.metrics.reconcileSeconds.startTimer();
    const result: ReconcileResult = { created: 0, refreshed: 0, deleted: 0, failed: 0, pendingDeletes: 0 };
    try {
      if (this.needResync) await this.loadFromStore();
      if (!this.isLeader()) return result;
      const now = this.now();
      const nowMs = now.getTime();
      const desired = this.opts.accounts.desiredAccounts();
      const work: Array<() => Promise<void>> = [];
      const wanted = new Set<string>();

      for (const [ns, accounts] of desired) {
        for (const sa of accounts) {
          const name = secretName(sa);
          const key = keyOf(ns, name);
          wanted.add(key);
          this.goneSince.delete(key);
          const known = this.known.get(key);
          if (!known) {
            work.push(() => this.write(ns, sa, undefined, result));
            continue;
          }
          // Most secrets are current: the pass checks them with two comparisons and no allocation.
          if (known.refreshAt > nowMs && known.rootCertPem === this.opts.ca.rootCertPem) continue;
          const reason = refreshReason(known, this.opts.ca.rootCertPem, now, this.opts.rotation);
          if (reason) work.push(() => this.write(ns, sa, known, result, reason));
        }
      }
      let nextDelete = Infinity;
      for (const [key, known] of this.known) {
        if (wanted.has(key)) continue;
        const since = this.goneSince.get(key) ?? now.getTime();
        this.goneSince.set(key, since);
        if (now.getTime() - since >= this.deleteDelayMs) work.push(() => this.remove(known, result));
        else {
          result.pendingDeletes++;
          nextDelete = Math.min(nextDelete, since + this.deleteDelayMs);
        }
      }
      for (const key of this.goneSince.keys()) if (!this.known.has(key)) this.goneSince.delete(key);

      await forEachLimited(work, this.concurrency, (task) => task());
      this.metrics.managed.set(this.known.size);
      if (result.failed > 0) this.scheduleWake(Date.now() + this.retry.next());
      else {
        this.retry.reset();
        this.scheduleWake(Math.min(nextDelete, this.nextRefreshTime()));
      }
      if (result.created || result.refreshed || result.deleted || result.failed) this.log.info('reconciled', { ...result, secrets: this.known.size });
      return result;
    } finally {
      end();
      for (const l of [...this.passListeners]) l(result);
    }
  }

  private knownOf(k: Omit<Known, 'refreshAt'>): Known {
    const refreshAt = k.notBefore && k.notAfter ? refreshTime(k.notBefore, k.notAfter, this.opts.rotation).getTime() : NaN;
    return { ...k, refreshAt };
  }

  private nextRefreshTime(): number {
    let next = Infinity;
    for (const k of this.known.values()) if (k.refreshAt < next) next = k.refreshAt;
    return next;
  }

  private scheduleWake(at: number): void {
    clearTimeout(this.wakeTimer);
    if (!Number.isFinite(at) || this.stopped) return;
    // Timers beyond ~24.8 days overflow; the resync timer covers anything that far out.
    const delay = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1);
    this.wakeTimer = setTimeout(() => this.trigger(), delay);
    this.wakeTimer.unref?.();
  }

  /** Re-reads every secret from the store: what exists, its version, validity and root. */
  private async loadFromStore(): Promise<void> {
    const stored = await this.opts.store.listSecrets();
    const fresh = new Map<string, Known>();
    for (const s of stored) {
      if (s.metadata?.type !== undefined && s.metadata.type !== SECRET_TYPE) continue;
      fresh.set(keyOf(s.namespace, s.name), this.knownOf(validityOf(s)));
    }
    const desired = this.opts.accounts.desiredAccounts();
    for (const [key, k] of this.known) {
      if (!fresh.has(key) && desired.get(k.namespace)?.has(k.serviceAccount)) {
        this.metrics.secretDeleted.inc();
        this.log.warn('secret was deleted while its account exists; recreating', { namespace: k.namespace, secret: k.name });
      }
    }
    this.known.clear();
    for (const [k, v] of fresh) this.known.set(k, v);
    this.needResync = false;
  }

  private async write(ns: string, sa: string, existing: Known | undefined, result: ReconcileResult, reason?: RefreshReason): Promise<void> {
    const name = secretName(sa);
    let secret: Secret;
    try {
      const identity = workloadIdentity(this.opts.ca.trustDomain, ns, sa);
      const bundle = this.opts.ca.issueKeyCertBundle(identity, this.opts.certTtlMs);
      secret = {
        namespace: ns,
        name,
        certChainPem: bundle.certChainPem,
        keyPem: bundle.keyPem,
        rootCertPem: bundle.rootCertPem,
        metadata: {
          type: SECRET_TYPE,
          serviceAccount: sa,
          spiffeId: spiffeId(identity),
          notBefore: bundle.notBefore.toISOString(),
          notAfter: bundle.notAfter.toISOString(),
          serialNumber: bundle.serialHex,
          updatedAt: this.now().toISOString(),
        },
      };
    } catch (err) {
      result.failed++;
      if (err instanceof SigningError) this.metrics.signErrors.inc({ error: err.code });
      else this.metrics.csrErrors.inc();
      this.log.error('cannot issue a certificate for the secret', { namespace: ns, secret: name, error: errorMessage(err) });
      return;
    }
    try {
      const version = await this.opts.store.putSecret(secret, existing ? existing.version : null);
      this.known.set(keyOf(ns, name), this.knownOf({ namespace: ns, name, serviceAccount: sa, version, notBefore: new Date(secret.metadata.notBefore), notAfter: new Date(secret.metadata.notAfter), rootCertPem: secret.rootCertPem }));
      if (existing) {
        result.refreshed++;
        this.metrics.refreshed.inc({ reason: reason ?? 'expiring' });
        this.log.info('refreshed secret', { namespace: ns, secret: name, reason, notAfter: secret.metadata.notAfter });
      } else {
        result.created++;
        this.metrics.created.inc();
        this.log.info('created secret', { namespace: ns, secret: name, notAfter: secret.metadata.notAfter });
      }
    } catch (err) {
      result.failed++;
      if (err instanceof ConflictError) {
        // Another writer got there first: re-read everything before deciding again.
        this.needResync = true;
        this.log.warn('secret changed under us; will re-read', { namespace: ns, secret: name, error: errorMessage(err) });
      } else {
        this.metrics.writeErrors.inc();
        this.log.error('cannot write secret; will retry', { namespace: ns, secret: name, error: errorMessage(err) });
      }
    }
  }

  private async remove(known: Known, result: ReconcileResult): Promise<void> {
    const key = keyOf(known.namespace, known.name);
    try {
      this.known.delete(key);
      await this.opts.store.deleteSecret(known.namespace, known.name, known.version);
      this.goneSince.delete(key);
      result.deleted++;
      this.metrics.deleted.inc();
      this.log.info('deleted secret of a service account that is gone', { namespace: known.namespace, secret: known.name });
    } catch (err) {
      result.failed++;
      this.needResync = true;
      this.log.error('cannot delete secret; will retry', { namespace: known.namespace, secret: known.name, error: errorMessage(err) });
    }
  }

  /** The secrets the controller currently keeps (for status output and tests). */
  snapshot(): Array<{ namespace: string; name: string; notAfter?: Date }> {
    return [...this.known.values()].map((k) => ({ namespace: k.namespace, name: k.name, notAfter: k.notAfter }));
  }
}

function validityOf(s: StoredSecret): Omit<Known, 'refreshAt'> {
  const sa = s.metadata?.serviceAccount ?? s.name.replace(/^istio\./, '');
  try {
    const leaf = parseCertificateDer(parsePemBlocks(s.certChainPem)[0].der); // the leaf comes first in cert-chain.pem
    return { namespace: s.namespace, name: s.name, serviceAccount: sa, version: s.version, notBefore: leaf.notBefore, notAfter: leaf.notAfter, rootCertPem: s.rootCertPem };
  } catch {
    return { namespace: s.namespace, name: s.name, serviceAccount: sa, version: s.version, rootCertPem: s.rootCertPem };
  }
}
