import { forEachLimited } from '../common/concurrency';
import { Logger } from '../common/log';
import { AccountRef, accountKey, accountOfSecretName, parseAccountKey, secretName } from '../pki/identity';
import type { Store, StoredSecret } from '../store/store';
import type { SecretsUpdate, WorkloadSecret } from '../api/ca-api';
import type { PlacementSource } from './placement';

/** How long changes are gathered before the subscribers are recomputed (well under the 1 s promise). */
const DEBOUNCE_MS = 25;
/** Store reads in flight at once. */
const READ_CONCURRENCY = 32;
/**
 * Largest update sent as one message: gRPC clients refuse messages over 4 MiB by default, and a
 * node with a thousand identities has 6 MB of secrets. Larger updates go in parts.
 */
export const MAX_UPDATE_BYTES = 1024 * 1024;

interface Subscription {
  host: string;
  send(update: SecretsUpdate): void;
  /** accountKey -> version last sent. */
  sent: Map<string, string>;
}


/**
 * Feeds each node the Citadel secrets (istio.<sa>, written by the secret controller) of the
 * identities Marathon places on its host. Entitlement is recomputed from the view at every push,
 * so a node stops receiving (and is told to remove) an identity as soon as its last task there is
 * gone. Secrets are read from the store when a node first needs them (so a node's snapshot does
 * not wait for the whole store) and kept current through the store's watch.
 */
export class SecretFeed {
  /** accountKey -> its Citadel secret, or null when the store has none. */
  private readonly cache = new Map<string, StoredSecret | null>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly stale = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribes: Array<() => void> = [];
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly placements: PlacementSource,
    private readonly logger: Logger,
    private readonly maxUpdateBytes = MAX_UPDATE_BYTES,
  ) {}

  start(): void {
    this.unsubscribes.push(
      this.store.watch((e) => {
        if (e.type === 'resync') for (const k of this.cache.keys()) this.stale.add(k);
        else {
          const serviceAccount = accountOfSecretName(e.name);
          const k = serviceAccount && accountKey({ namespace: e.namespace, serviceAccount });
          if (k && this.cache.has(k)) this.stale.add(k);
        }
        this.schedule();
      }),
    );
    this.unsubscribes.push(this.placements.onChange(() => this.schedule()));
  }

  stop(): void {
    for (const u of this.unsubscribes) u();
    this.unsubscribes = [];
    clearTimeout(this.timer);
  }

  /** Starts feeding `host`; the first update (a snapshot) follows as soon as its secrets are read. */
  subscribe(host: string, send: (u: SecretsUpdate) => void): () => void {
    const sub: Subscription = { host, send, sent: new Map() };
    let active = true;
    this.flushing = this.flushing
      .then(() => this.fetch(this.entitledKeys(host)))
      .then(() => {
        if (!active) return;
        this.subscriptions.add(sub);
        this.push(sub, true);
      })
      .catch((err) => this.logger.warn('secret feed cannot read the store; a node waits for its snapshot', { host, error: (err as Error).message }));
    return () => {
      active = false;
      this.subscriptions.delete(sub);
    };
  }

  private entitledKeys(host: string): string[] {
    return this.placements.identitiesOnHost(host).map(accountKey);
  }

  /** Reads the secrets not yet cached (or changed since) into the cache. */
  private async fetch(keys: string[]): Promise<void> {
    const todo = keys.filter((k) => !this.cache.has(k) || this.stale.has(k));
    await forEachLimited(todo, READ_CONCURRENCY, async (k) => {
      this.stale.delete(k);
      const { namespace, serviceAccount } = parseAccountKey(k);
      const s = await this.store.getSecret(namespace, secretName(serviceAccount));
      this.cache.set(k, s ?? null);
    });
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush()).catch((err) => {
        this.logger.warn('secret feed cannot read the store; will retry', { error: (err as Error).message });
        setTimeout(() => this.schedule(), 1000).unref();
      });
    }, DEBOUNCE_MS);
  }

  /** Re-reads what changed and what subscribers newly need, then pushes to each node what changed for it. */
  private async flush(): Promise<void> {
    const needed = new Set<string>();
    for (const sub of this.subscriptions) for (const k of this.entitledKeys(sub.host)) needed.add(k);
    await this.fetch([...needed]);
    // Forget secrets no node needs any more; they are read again if one does.
    for (const k of this.cache.keys()) if (!needed.has(k)) this.cache.delete(k);
    for (const k of this.stale) if (!this.cache.has(k)) this.stale.delete(k);
    for (const sub of this.subscriptions) this.push(sub, false);
  }

  /** Sends what changed for one node since the last push (everything, on the first). */
  private push(sub: Subscription, snapshot: boolean): void {
    const secrets: WorkloadSecret[] = [];
    const now = new Map<string, string>();
    for (const account of this.placements.identitiesOnHost(sub.host)) {
      const { namespace, serviceAccount } = account;
      const k = accountKey(account);
      const s = this.cache.get(k);
      if (!s) continue; // not written by the controller yet: it comes with the store event
      const version = `${s.metadata.serialNumber}.${s.version}`;
      now.set(k, version);
      if (snapshot || sub.sent.get(k) !== version) {
        secrets.push({ namespace, serviceAccount, certChain: s.certChainPem, key: s.keyPem, rootCert: s.rootCertPem, version });
      }
    }
    const removed: AccountRef[] = [];
    if (!snapshot) for (const k of sub.sent.keys()) if (!now.has(k)) removed.push(parseAccountKey(k));
    sub.sent = now;
    if (snapshot || secrets.length || removed.length) for (const part of this.parts({ snapshot, secrets, removed })) sub.send(part);
  }

  /**
   * An update in messages of at most maxUpdateBytes of secrets each (one secret larger than that
   * goes alone). A snapshot's parts are all marked snapshot, every one but the last `more`, so the
   * node applies them together; a change's parts are changes each.
   */
  private parts(u: SecretsUpdate): SecretsUpdate[] {
    const parts: WorkloadSecret[][] = [[]];
    let bytes = 0;
    for (const s of u.secrets) {
      const size = s.certChain.length + s.key.length + s.rootCert.length + s.namespace.length + s.serviceAccount.length + s.version.length + 16;
      if (bytes + size > this.maxUpdateBytes && parts[parts.length - 1].length) {
        parts.push([]);
        bytes = 0;
      }
      parts[parts.length - 1].push(s);
      bytes += size;
    }
    return parts.map((secrets, i) => {
      const last = i === parts.length - 1;
      return { snapshot: u.snapshot, secrets, removed: last ? u.removed : [], ...(u.snapshot && !last ? { more: true } : {}) };
    });
  }
}
