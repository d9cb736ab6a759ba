/**
 * SDS mode's certificates: for each identity on this node, a key made here (and kept in memory
 * only), a CSR with exactly the identity's URI SAN, signed by the CA under the node's authority
 * (CreateCertificate), renewed at half its lifetime. One certificate per identity, however many
 * streams want it: concurrent first requests wait for the same CSR. When the CA is seen signing
 * under another root of --ca-root, every certificate under the old one is renewed, spread out.
 */
import { EventEmitter } from 'node:events';
import type { Counter, Gauge, Histogram } from 'prom-client';
import { Backoff, BackoffOptions, sleep } from '../common/backoff';
import { errorMessage } from '../common/errors';
import type { KeyCertBundle } from '../ca/authority';
import type { Logger } from '../common/log';
import { checkBundle } from '../pki/bundle';
import { createCsr } from '../pki/csr';
import { AccountRef, accountKey, spiffeId, workloadIdentity } from '../pki/identity';
import { generateSigningKeyPair, KeyAlgorithm } from '../pki/keys';
import { splitCertificates } from '../pki/pem';
import type { NodeCredentials } from './node-credential';
import { caRefusal } from './ca-refusal';
import { Rotator } from './rotator';
import type { RootChange, TrustBundle } from './trust-bundle';

/** A Citadel key and certificate (its chain without the root; `rootCertPem`: the root of --ca-root it leads to, as the CA sent it), for one identity. */
export interface WorkloadCert extends KeyCertBundle {
  account: AccountRef;
  spiffeId: string;
}

export interface WorkloadCertMetrics {
  csrSeconds: Histogram;
  csrErrors: Counter;
  expiry: Gauge<'spiffe_id'>;
}

export interface WorkloadCertificatesOptions {
  credentials: NodeCredentials;
  trustDomain: string;
  /** --ca-root: every certificate must chain to one of its roots; told the root each answer leads to. */
  trust: TrustBundle;
  /** --secret-ttl (Istio's SECRET_TTL, 24h). */
  ttlMs: number;
  keyAlgorithm: KeyAlgorithm;
  logger: Logger;
  backoff?: BackoffOptions;
  metrics?: WorkloadCertMetrics;
  /** CSRs in flight at once (the CA rate-limits each node). */
  concurrency?: number;
  /** After a root change, each identity is renewed at a random moment within this (default: a tenth of the TTL, at most 30 s). */
  rootChangeSpreadMs?: number;
  random?: () => number;
}

interface Entry {
  account: AccountRef;
  cert?: WorkloadCert;
  pending?: Promise<WorkloadCert>;
  rotator?: Rotator<WorkloadCert>;
  expiryTimer?: NodeJS.Timeout;
  /** A renewal under the new root, waiting for its moment. */
  rootChangeTimer?: NodeJS.Timeout;
  released: AbortController;
}

/**
 * Events: `issued` (cert) for each new certificate of an identity, `expired` (account) when a
 * certificate expired without a successor (the CA unreachable meanwhile).
 */
export class WorkloadCertificates extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private inFlight = 0;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly opts: WorkloadCertificatesOptions) {
    super();
    this.setMaxListeners(0);
    opts.trust.on('changed', (c: RootChange) => this.renewUnder(c.current));
  }

  /** The identity's certificate if it has a valid one now; never an expired one. */
  current(account: AccountRef): WorkloadCert | undefined {
    const cert = this.entries.get(accountKey(account))?.cert;
    return cert && cert.notAfter.getTime() > Date.now() ? cert : undefined;
  }

  /** The identity's certificate, obtained (once, for every caller) if it has none: retried until it succeeds or the identity is released. */
  ensure(account: AccountRef): Promise<WorkloadCert> {
    const key = accountKey(account);
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { account, released: new AbortController() };
      this.entries.set(key, entry);
    }
    const now = this.current(account);
    if (now) return Promise.resolve(now);
    // An expired certificate (the CA away) still has its rotation loop: ask it again, never start a second one.
    entry.pending ??= (entry.rotator ? this.renewExpired(entry) : this.firstCertificate(entry)).finally(() => (entry!.pending = undefined));
    return entry.pending;
  }

  /** The identity left the node: stop renewing it and forget its key. */
  release(account: AccountRef): void {
    const key = accountKey(account);
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    entry.released.abort();
    void entry.rotator?.stop();
    clearTimeout(entry.expiryTimer);
    clearTimeout(entry.rootChangeTimer);
    this.opts.metrics?.expiry.remove({ spiffe_id: spiffeId(workloadIdentity(this.opts.trustDomain, account.namespace, account.serviceAccount)) });
  }

  /** Renews an identity's certificate now (a new key too), as its rotation would. */
  async rotateNow(account: AccountRef): Promise<void> {
    await this.entries.get(accountKey(account))?.rotator?.rotateNow();
  }

  /** Every identity with a certificate, for status pages. */
  list(): WorkloadCert[] {
    return [...this.entries.values()].flatMap((e) => (e.cert ? [e.cert] : []));
  }

  async close(): Promise<void> {
    for (const e of [...this.entries.values()]) this.release(e.account);
  }

  private async firstCertificate(entry: Entry): Promise<WorkloadCert> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000, ...this.opts.backoff });
    for (;;) {
      if (entry.released.signal.aborted) throw new Error(`${accountKey(entry.account)} left this node`);
      try {
        const cert = await this.issue(entry.account);
        if (entry.released.signal.aborted) throw new Error(`${accountKey(entry.account)} left this node`);
        this.install(entry, cert);
        entry.rotator = new Rotator(cert, {
          what: `certificate of ${cert.spiffeId}`,
          renew: () => this.issue(entry.account),
          onRotated: (next) => this.install(entry, next),
          askedLifetimeMs: this.opts.ttlMs,
          refusal: caRefusal,
          backoff: this.opts.backoff,
          logger: this.opts.logger,
        });
        return cert;
      } catch (err) {
        if (entry.released.signal.aborted) throw err;
        const delay = backoff.next();
        const refusal = caRefusal(err);
        if (refusal) this.opts.logger.error('the CA refuses this node a workload certificate; retrying', { identity: accountKey(entry.account), refusal, retryInMs: delay });
        else this.opts.logger.warn('cannot obtain a workload certificate; retrying', { identity: accountKey(entry.account), error: errorMessage(err), retryInMs: delay });
        await sleep(delay, entry.released.signal);
      }
    }
  }

  /** While someone waits for an identity whose certificate expired: its rotator tries again now, then with backoff, until one is valid. */
  private async renewExpired(entry: Entry): Promise<WorkloadCert> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000, ...this.opts.backoff });
    for (;;) {
      if (entry.released.signal.aborted) throw new Error(`${accountKey(entry.account)} left this node`);
      await entry.rotator!.rotateNow();
      const cert = this.current(entry.account);
      if (cert) return cert;
      await sleep(backoff.next(), entry.released.signal);
    }
  }

  /**
   * The CA signs under a new root: renew every certificate under another one, each at a random
   * moment of the spread so that a node's thousand identities do not ask at once (the CSR slots
   * and the CA's rate limit, with the rotators' backoff, do the rest). The old certificates stay
   * served meanwhile: ROOTCA holds both roots, so peers on either trust them.
   */
  private renewUnder(root: string): void {
    const spread = this.opts.rootChangeSpreadMs ?? Math.min(30_000, this.opts.ttlMs / 10);
    const random = this.opts.random ?? Math.random;
    const stale = [...this.entries.values()].filter((e) => e.cert && e.cert.rootCertPem !== root);
    this.opts.logger.info('the CA signs under a new root; renewing the certificates under the old one', { identities: stale.length, spreadMs: spread });
    for (const entry of stale) {
      clearTimeout(entry.rootChangeTimer);
      entry.rootChangeTimer = setTimeout(() => {
        // Renewed meanwhile (its own rotation, or it left): nothing to do.
        if (entry.released.signal.aborted || !entry.cert || entry.cert.rootCertPem === this.opts.trust.current) return;
        void entry.rotator?.rotateNow();
      }, Math.floor(random() * spread));
      entry.rootChangeTimer.unref?.();
    }
  }

  private install(entry: Entry, cert: WorkloadCert): void {
    entry.cert = cert;
    // Verified to a root of --ca-root: the root the CA signs under now. Its listeners push ROOTCA
    // before the certificate goes out below; their failure must not cost the certificate.
    try {
      this.opts.trust.observe(cert.rootCertPem);
    } catch (err) {
      this.opts.logger.error('cannot follow the CA to its new root', { identity: accountKey(entry.account), error: errorMessage(err) });
    }
    this.opts.metrics?.expiry.set({ spiffe_id: cert.spiffeId }, cert.notAfter.getTime() / 1000);
    clearTimeout(entry.expiryTimer);
    // A certificate that expires before its successor arrives (the CA away) must no longer be served.
    entry.expiryTimer = setTimeout(() => {
      if (entry.cert === cert && !entry.released.signal.aborted) this.emit('expired', entry.account);
    }, Math.min(2 ** 31 - 1, Math.max(0, cert.notAfter.getTime() - Date.now())));
    entry.expiryTimer.unref?.();
    this.emit('issued', cert);
  }

  /** Makes a key and a CSR and has the CA sign it under the node credential; checks the answer before use. */
  private async issue(account: AccountRef): Promise<WorkloadCert> {
    await this.slot();
    const started = performance.now();
    try {
      const identity = workloadIdentity(this.opts.trustDomain, account.namespace, account.serviceAccount);
      const id = spiffeId(identity);
      const key = generateSigningKeyPair(this.opts.keyAlgorithm);
      const csr = createCsr({ key, uris: [id] });
      const chain = await this.opts.credentials.sharedClient().createCertificate(csr, Math.round(this.opts.ttlMs / 1000));
      const pems = chain.flatMap((c) => splitCertificates(c));
      const rootCertPem = pems[pems.length - 1];
      if (pems.length < 2 || !this.opts.trust.trusts(rootCertPem)) {
        throw new Error('the CA answered with a chain whose root is not in --ca-root');
      }
      const certChainPem = pems.slice(0, -1).join('');
      const keyPem = key.privateKeyPem;
      const check = checkBundle({ certChainPem, keyPem }, { trustedRootPem: rootCertPem, expected: identity, keySpki: key.spki });
      if (!check.ok || !check.leaf) throw new Error(`the CA's certificate is refused: ${check.problems.join('; ')}`);
      this.opts.metrics?.csrSeconds.observe((performance.now() - started) / 1000);
      return { account, spiffeId: id, certChainPem, keyPem, rootCertPem, notBefore: check.leaf.notBefore, notAfter: check.leaf.notAfter, serialHex: check.leaf.serialHex };
    } catch (err) {
      this.opts.metrics?.csrErrors.inc();
      throw err;
    } finally {
      this.releaseSlot();
    }
  }

  private slot(): Promise<void> {
    if (this.inFlight < (this.opts.concurrency ?? 64)) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(() => (this.inFlight++, resolve())));
  }

  private releaseSlot(): void {
    this.inFlight--;
    this.queue.shift()?.();
  }
}
