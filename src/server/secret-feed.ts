import { forEachLimited } from '../common/concurrency';
import { Logger } from '../common/log';
import type { MarathonView } from '../marathon/view';
import { secretName } from '../pki/identity';
import type { Store, StoredSecret } from '../store/store';
import type { SecretsUpdate, WorkloadRef, WorkloadSecret } from './api';

/** How long changes are gathered before the subscribers are recomputed (well under the 1 s promise). */
const DEBOUNCE_MS = 25;
/** Store reads in flight at once. */
const READ_CONCURRENCY = 32;

interface Subscription {
  host: string;
  send(update: SecretsUpdate): void;
  /** "ns/sa" -> version last sent. */
  sent: Map<string, string>;
}

/** The store key of the Citadel secret of an identity: `<ns>/istio.<sa>`. */
const secretKey = (ns: string, sa: string) => `${ns}/${secretName(sa)}`;

/**
 * Feeds each node the Citadel secrets (istio.<sa>, written by the secret controller) of the
 * identities Marathon places on its host. Entitlement is recomputed from the view at every push,
 * so a node stops receiving (and is told to remove) an identity as soon as its last task there is
 * gone. Secrets are read from the store when a node first needs them (so a node's snapshot does
 * not wait for the whole store) and kept current through the store's watch.
 */
export class SecretFeed {
  /** Store key -> the secret, or null when the store has none. */
  private readonly cache = new Map<string, StoredSecret | null>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly stale = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribes: Array<() => void> = [];
  private started = false;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly store: Store, private readonly view: MarathonView | undefined, private readonly logger: Logger) {}

  async start(): Promise<void> {
    this.unsubscribes.push(
      this.store.watch((e) => {
        if (e.type === 'resync') for (const k of this.cache.keys()) this.stale.add(k);
        else if (this.cache.has(`${e.namespace}/${e.name}`)) this.stale.add(`${e.namespace}/${e.name}`);
        this.schedule();
      }),
    );
    if (this.view) this.unsubscribes.push(this.view.onChange(() => this.schedule()));
    this.started = true;
  }

  stop(): void {
    for (const u of this.unsubscribes) u();
    this.unsubscribes = [];
    clearTimeout(this.timer);
  }

  get ready(): boolean {
    return this.started;
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

  private entitled(host: string): Array<{ namespace: string; serviceAccount: string }> {
    return this.view ? this.view.identitiesOnHost(host) : [];
  }

  private entitledKeys(host: string): string[] {
    return this.entitled(host).map((i) => secretKey(i.namespace, i.serviceAccount));
  }

  /** Reads the secrets not yet cached (or changed since) into the cache. */
  private async fetch(keys: string[]): Promise<void> {
    const todo = keys.filter((k) => !this.cache.has(k) || this.stale.has(k));
    await forEachLimited(todo, READ_CONCURRENCY, async (k) => {
      this.stale.delete(k);
      const slash = k.indexOf('/');
      const s = await this.store.getSecret(k.slice(0, slash), k.slice(slash + 1));
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
    for (const { namespace, serviceAccount } of this.entitled(sub.host)) {
      const s = this.cache.get(secretKey(namespace, serviceAccount));
      if (!s) continue; // not written by the controller yet: it comes with the store event
      const version = `${s.metadata.serialNumber}.${s.version}`;
      const k = `${namespace}/${serviceAccount}`;
      now.set(k, version);
      if (snapshot || sub.sent.get(k) !== version) {
        secrets.push({ namespace, serviceAccount, certChain: s.certChainPem, key: s.keyPem, rootCert: s.rootCertPem, version });
      }
    }
    const removed: WorkloadRef[] = [];
    if (!snapshot) {
      for (const k of sub.sent.keys()) {
        if (now.has(k)) continue;
        const slash = k.indexOf('/');
        removed.push({ namespace: k.slice(0, slash), serviceAccount: k.slice(slash + 1) });
      }
    }
    sub.sent = now;
    if (snapshot || secrets.length || removed.length) sub.send({ snapshot, secrets, removed });
  }
}
