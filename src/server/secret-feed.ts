import { Logger } from '../common/log';
import type { MarathonView } from '../marathon/view';
import { secretName } from '../pki/identity';
import type { Store, StoredSecret } from '../store/store';
import type { SecretsUpdate, WorkloadRef, WorkloadSecret } from './api';

/** How long changes are gathered before the subscribers are recomputed (well under the 1 s promise). */
const DEBOUNCE_MS = 25;

interface Subscription {
  host: string;
  send(update: SecretsUpdate): void;
  /** "ns/sa" -> version last sent. */
  sent: Map<string, string>;
}

const key = (ns: string, sa: string) => `${ns}/${sa}`;

/**
 * Feeds each node the Citadel secrets (istio.<sa>, written by the secret controller) of the
 * identities Marathon places on its host. Entitlement is recomputed from the view at every push,
 * so a node stops receiving (and is told to remove) an identity as soon as its last task there is
 * gone. Secrets are cached from the store and kept current through its watch.
 */
export class SecretFeed {
  private readonly secrets = new Map<string, StoredSecret>();
  private readonly subscriptions = new Set<Subscription>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribes: Array<() => void> = [];
  private loaded = false;
  private pending = Promise.resolve();

  constructor(private readonly store: Store, private readonly view: MarathonView | undefined, private readonly logger: Logger) {}

  /** Loads the store's secrets in the background (resolves when loaded); nodes that subscribe meanwhile get their snapshot after. */
  start(): Promise<void> {
    const loading = this.reload().then(() => {
      this.loaded = true;
    });
    this.pending = loading.catch((err) => this.logger.error('secret feed cannot load the store', { error: (err as Error).message }));
    this.unsubscribes.push(this.store.watch((e) => this.enqueue(() => (e.type === 'resync' ? this.reload() : this.refresh(e.namespace, e.name)))));
    if (this.view) this.unsubscribes.push(this.view.onChange(() => this.schedule()));
    return loading;
  }

  stop(): void {
    for (const u of this.unsubscribes) u();
    this.unsubscribes = [];
    clearTimeout(this.timer);
  }

  get ready(): boolean {
    return this.loaded;
  }

  /** Starts feeding `host`; the first update (a snapshot) is sent at once. */
  subscribe(host: string, send: (u: SecretsUpdate) => void): () => void {
    const sub: Subscription = { host, send, sent: new Map() };
    let active = true;
    const begin = () => {
      if (!active) return;
      this.subscriptions.add(sub);
      this.push(sub, true);
    };
    if (this.loaded) begin();
    else void this.pending.then(begin);
    return () => {
      active = false;
      this.subscriptions.delete(sub);
    };
  }

  /** The secret of an identity if `host` is entitled to it now. */
  entitled(host: string): Array<{ namespace: string; serviceAccount: string }> {
    return this.view ? this.view.identitiesOnHost(host) : [];
  }

  private enqueue(task: () => Promise<void>): void {
    this.pending = this.pending
      .then(task)
      .catch((err) => this.logger.warn('secret feed cannot read the store; will retry on the next change', { error: (err as Error).message }))
      .then(() => this.schedule());
  }

  private async reload(): Promise<void> {
    const all = await this.store.listSecrets();
    this.secrets.clear();
    for (const s of all) this.secrets.set(`${s.namespace}/${s.name}`, s);
  }

  private async refresh(namespace: string, name: string): Promise<void> {
    const s = await this.store.getSecret(namespace, name);
    if (s) this.secrets.set(`${namespace}/${name}`, s);
    else this.secrets.delete(`${namespace}/${name}`);
  }

  private schedule(): void {
    if (this.timer || this.subscriptions.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const sub of this.subscriptions) this.push(sub, false);
    }, DEBOUNCE_MS);
  }

  /** Sends what changed for one node since the last push (everything, on the first). */
  private push(sub: Subscription, snapshot: boolean): void {
    const secrets: WorkloadSecret[] = [];
    const now = new Map<string, string>();
    for (const { namespace, serviceAccount } of this.entitled(sub.host)) {
      const s = this.secrets.get(`${namespace}/${secretName(serviceAccount)}`);
      if (!s) continue; // the controller has not written it yet; it arrives with the store event
      const version = `${s.metadata.serialNumber}.${s.version}`;
      const k = key(namespace, serviceAccount);
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
