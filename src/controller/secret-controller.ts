import { CertificateAuthority, SigningError } from '../ca/authority';
import { certificateTime, IssuanceAudit, NO_AUDIT } from '../ca/audit-log';
import { refreshTime, RefreshReason, RotationPolicy } from '../ca/rotation';
import { Backoff } from '../common/backoff';
import { forEachLimited } from '../common/concurrency';
import { ConflictError, errorMessage } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { parseCertificateDer } from '../pki/certificate';
import { parsePemBlocks } from '../pki/pem';
import { AccountRef, accountKey, accountOfSecretName, secretName, spiffeId, workloadIdentity } from '../pki/identity';
import { Secret, SECRET_TYPE, Store, StoredSecret } from '../store/store';
import { SecretControllerMetrics } from './metrics';
import { KnownSecret, planReconcile } from './plan';
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
  /** Hears every certificate the controller issues (`--audit-log`). */
  audit?: IssuanceAudit;
  now?: () => Date;
}

export interface ReconcileResult {
  created: number;
  refreshed: number;
  deleted: number;
  failed: number;
  pendingDeletes: number;
}

/** The shortest re-issue interval: a tenth of the lifetime, and never under a second. */
export function minReissueIntervalMs(ttlMs: number): number {
  return Math.max(1000, ttlMs / 10);
}

/**
 * Citadel's secret controller for Marathon: for every namespace with apps or pods, keeps
 * `istio.default` and `istio.<sa>` for each account they name. Creates what is missing,
 * refreshes at the grace period, on a root change or an unparseable certificate, recreates
 * deleted secrets, and deletes the secrets of accounts gone for longer than the delete delay.
 */
export class SecretController {
  /** accountKey -> the secret in the store. */
  private readonly known = new Map<string, KnownSecret>();
  private goneSince = new Map<string, number>();
  private readonly log: Logger;
  private readonly metrics: SecretControllerMetrics;
  private readonly now: () => Date;
  private readonly deleteDelayMs: number;
  private readonly resyncIntervalMs: number;
  private readonly concurrency: number;
  private readonly isLeader: () => boolean;
  private readonly minReissueMs: number;
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
    this.minReissueMs = minReissueIntervalMs(opts.certTtlMs ?? opts.ca.config.workloadCertTtlMs);
  }

  /** Reconciles once, then follows Marathon changes, store changes, rotation times and the resync timer. */
  async start(): Promise<ReconcileResult> {
    this.unsubscribe.push(this.opts.accounts.onChange(() => this.trigger()));
    this.unsubscribe.push(
      this.opts.store.watch((e) => {
        if (e.type === 'resync') this.needResync = true;
        else if (e.type === 'put') return; // ours, or another replica's: picked up on resync
        else {
          const serviceAccount = accountOfSecretName(e.name);
          // Deleted by someone else (our own deletes are forgotten before the event arrives).
          if (serviceAccount) this.known.delete(accountKey({ namespace: e.namespace, serviceAccount }));
        }
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
      const now = this.now().getTime();
      const plan = planReconcile({
        desired: this.opts.accounts.desiredAccounts(),
        known: this.known,
        goneSince: this.goneSince,
        now,
        rootCertPem: this.opts.ca.rootCertPem,
        rotation: this.opts.rotation,
        deleteDelayMs: this.deleteDelayMs,
        minReissueIntervalMs: this.minReissueMs,
      });
      this.goneSince = plan.goneSince;
      result.pendingDeletes = plan.pendingDeletes;
      if (plan.held) this.metrics.reissueHeld.inc(plan.held);
      const work: Array<() => Promise<void>> = [
        ...plan.create.map((a) => () => this.write(a, undefined, result)),
        ...plan.refresh.map(({ known, reason }) => () => this.write(known, known, result, reason)),
        ...plan.delete.map((k) => () => this.remove(k, result)),
      ];
      await forEachLimited(work, this.concurrency, (task) => task());
      this.metrics.managed.set(this.known.size);
      this.metrics.soonestExpiry.set(this.soonestExpiry() / 1000);
      if (result.failed > 0) this.scheduleWake(this.now().getTime() + this.retry.next());
      else {
        this.retry.reset();
        // The plan knew when the secrets it left alone are due; those written now are due at their own refresh time.
        let wakeAt = plan.nextWakeAt;
        for (const a of [...plan.create, ...plan.refresh.map((r) => r.known)]) wakeAt = Math.min(wakeAt, this.known.get(accountKey(a))?.refreshAt ?? Infinity);
        this.scheduleWake(wakeAt);
      }
      if (result.created || result.refreshed || result.deleted || result.failed) this.log.info('reconciled', { ...result, secrets: this.known.size });
      return result;
    } finally {
      end();
      for (const l of [...this.passListeners]) l(result);
    }
  }

  private scheduleWake(at: number): void {
    clearTimeout(this.wakeTimer);
    if (!Number.isFinite(at) || this.stopped) return;
    // Timers beyond ~24.8 days overflow; the resync timer covers anything that far out.
    const delay = Math.min(Math.max(0, at - this.now().getTime()), 2 ** 31 - 1);
    this.wakeTimer = setTimeout(() => this.trigger(), delay);
    this.wakeTimer.unref?.();
  }

  /** Re-reads every secret from the store: what exists, its version, validity and root. */
  private async loadFromStore(): Promise<void> {
    const stored = await this.opts.store.listSecrets();
    const fresh = new Map<string, KnownSecret>();
    for (const s of stored) {
      if (s.metadata?.type !== undefined && s.metadata.type !== SECRET_TYPE) continue;
      const k = this.knownOf(s);
      if (k) fresh.set(accountKey(k), k);
    }
    const desired = this.opts.accounts.desiredAccounts();
    for (const [key, k] of this.known) {
      if (!fresh.has(key) && desired.get(k.namespace)?.has(k.serviceAccount)) {
        this.metrics.secretDeleted.inc();
        this.log.warn('secret was deleted while its account exists; recreating', { namespace: k.namespace, secret: secretName(k.serviceAccount) });
      }
    }
    this.known.clear();
    for (const [k, v] of fresh) this.known.set(k, v);
    this.needResync = false;
  }

  /** What the controller keeps of a stored secret; undefined (logged) for one that is not Citadel's. */
  private knownOf(s: StoredSecret): KnownSecret | undefined {
    const serviceAccount = accountOfSecretName(s.name);
    if (!serviceAccount) {
      this.log.warn('ignoring a stored secret that is not istio.<service account>', { namespace: s.namespace, secret: s.name });
      return undefined;
    }
    const base = { namespace: s.namespace, serviceAccount, version: s.version, rootCertPem: s.rootCertPem, writtenAt: Date.parse(s.metadata?.updatedAt ?? '') };
    try {
      const first = parsePemBlocks(s.certChainPem)[0]; // the leaf comes first in cert-chain.pem
      if (!first) throw new Error('cert-chain.pem holds no PEM block');
      const leaf = parseCertificateDer(first.der);
      return { ...base, notBefore: leaf.notBefore, notAfter: leaf.notAfter, refreshAt: refreshTime(leaf.notBefore, leaf.notAfter, this.opts.rotation).getTime() };
    } catch (err) {
      this.log.warn('the certificate of a stored secret does not parse; it will be refreshed', { namespace: s.namespace, secret: s.name, error: errorMessage(err) });
      return { ...base, refreshAt: NaN };
    }
  }

  private async write(account: AccountRef, existing: KnownSecret | undefined, result: ReconcileResult, reason?: RefreshReason): Promise<void> {
    const { namespace, serviceAccount } = account;
    const name = secretName(serviceAccount);
    const now = this.now();
    let secret: Secret;
    try {
      const identity = workloadIdentity(this.opts.ca.trustDomain, namespace, serviceAccount);
      const bundle = this.opts.ca.issueKeyCertBundle(identity, this.opts.certTtlMs, now);
      (this.opts.audit ?? NO_AUDIT).record({ event: 'issued', api: 'secret-controller', caller: 'secret-controller', spiffeId: spiffeId(identity), serial: bundle.serialHex, notAfter: certificateTime(bundle.notAfter) });
      secret = {
        namespace,
        name,
        certChainPem: bundle.certChainPem,
        keyPem: bundle.keyPem,
        rootCertPem: bundle.rootCertPem,
        metadata: {
          type: SECRET_TYPE,
          serviceAccount,
          spiffeId: spiffeId(identity),
          notBefore: bundle.notBefore.toISOString(),
          notAfter: bundle.notAfter.toISOString(),
          serialNumber: bundle.serialHex,
          updatedAt: now.toISOString(),
        },
      };
    } catch (err) {
      result.failed++;
      // Citadel counts signing refusals by their kind, and anything else (making the key) as a CSR error.
      if (err instanceof SigningError) this.metrics.signErrors.inc({ error: err.code });
      else this.metrics.csrErrors.inc();
      this.log.error('cannot issue a certificate for the secret', { namespace, secret: name, error: errorMessage(err) });
      return;
    }
    try {
      const version = await this.opts.store.putSecret(secret, existing ? existing.version : null);
      const notBefore = new Date(secret.metadata.notBefore);
      const notAfter = new Date(secret.metadata.notAfter);
      this.known.set(accountKey(account), {
        namespace, serviceAccount, version, notBefore, notAfter, rootCertPem: secret.rootCertPem,
        refreshAt: refreshTime(notBefore, notAfter, this.opts.rotation).getTime(), writtenAt: now.getTime(),
      });
      if (existing) {
        result.refreshed++;
        this.metrics.refreshed.inc({ reason: reason ?? 'expiring' });
        this.log.info('refreshed secret', { namespace, secret: name, reason, notAfter: secret.metadata.notAfter });
      } else {
        result.created++;
        this.metrics.created.inc();
        this.log.info('created secret', { namespace, secret: name, notAfter: secret.metadata.notAfter });
      }
    } catch (err) {
      result.failed++;
      if (err instanceof ConflictError) {
        // Another writer got there first: re-read everything before deciding again.
        this.needResync = true;
        this.log.warn('secret changed under us; will re-read', { namespace, secret: name, error: errorMessage(err) });
      } else {
        this.metrics.writeErrors.inc();
        this.log.error('cannot write secret; will retry', { namespace, secret: name, error: errorMessage(err) });
      }
    }
  }

  private async remove(known: KnownSecret, result: ReconcileResult): Promise<void> {
    const key = accountKey(known);
    const name = secretName(known.serviceAccount);
    try {
      this.known.delete(key);
      await this.opts.store.deleteSecret(known.namespace, name, known.version);
      this.goneSince.delete(key);
      result.deleted++;
      this.metrics.deleted.inc();
      this.log.info('deleted secret of a service account that is gone', { namespace: known.namespace, secret: name });
    } catch (err) {
      result.failed++;
      this.needResync = true;
      this.log.error('cannot delete secret; will retry', { namespace: known.namespace, secret: name, error: errorMessage(err) });
    }
  }

  /** When the first kept secret expires (ms since the epoch; 0 with none). */
  soonestExpiry(): number {
    let soonest = Infinity;
    for (const k of this.known.values()) if (k.notAfter && k.notAfter.getTime() < soonest) soonest = k.notAfter.getTime();
    return Number.isFinite(soonest) ? soonest : 0;
  }

  /** The secrets the controller currently keeps (for status output and tests). */
  snapshot(): Array<{ namespace: string; name: string; notAfter?: Date }> {
    return [...this.known.values()].map((k) => ({ namespace: k.namespace, name: secretName(k.serviceAccount), notAfter: k.notAfter }));
  }
}
