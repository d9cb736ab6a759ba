/** The in-memory view of Marathon's workloads that the controller and the server read. */
import { isDeepStrictEqual } from 'node:util';
import { Counter, Gauge, type Registry } from 'prom-client';
import { silentLogger, type Logger } from '../common/log';
import { accountKey, parseAccountKey, type AccountRef } from '../pki/identity';
import { DEFAULT_SERVICE_ACCOUNT, isInvalid, isLive, type InvalidWorkload, type Workload } from './workload';

export type ViewEntry = Workload | InvalidWorkload;

/** The apps and pods one applied change set, replaced or removed (empty when a re-list found nothing new). */
export interface ViewChange {
  readonly workloads: ReadonlyArray<{ readonly kind: 'app' | 'pod'; readonly id: string }>;
}

export interface MarathonViewOptions {
  logger?: Logger;
  /** registers citadel_marathon_* metrics (invalid workloads, workloads) when given */
  registry?: Registry;
}

const keyOf = (kind: 'app' | 'pod', id: string) => `${kind}:${id}`;

function bump<K>(m: Map<K, number>, k: K, d: number): void {
  const n = (m.get(k) ?? 0) + d;
  if (n === 0) m.delete(k);
  else m.set(k, n);
}
function bump2<K1, K2>(m: Map<K1, Map<K2, number>>, k1: K1, k2: K2, d: number): void {
  let inner = m.get(k1);
  if (!inner) m.set(k1, (inner = new Map()));
  bump(inner, k2, d);
  if (inner.size === 0) m.delete(k1);
}

export class MarathonView {
  private readonly entries = new Map<string, ViewEntry>();
  /** namespace -> service account -> number of workloads naming it */
  private readonly accounts = new Map<string, Map<string, number>>();
  /** host -> accountKey -> live instances */
  private readonly byHost = new Map<string, Map<string, number>>();
  /** accountKey -> host -> live instances */
  private readonly byIdentity = new Map<string, Map<string, number>>();
  /** group id -> keys of the apps and pods beneath it, at any depth (not kept for the root) */
  private readonly byGroup = new Map<string, Set<string>>();
  private invalidCount = 0;
  private desiredCache: Map<string, Set<string>> | undefined;
  /** Namespaces whose accounts may have changed since desiredCache was made. */
  private readonly dirtyNamespaces = new Set<string>();
  private readonly listeners = new Set<(change: ViewChange) => void>();
  /** what changed since the last notification */
  private changed: Array<{ kind: 'app' | 'pod'; id: string }> = [];
  private readonly log: Logger;
  private readonly invalidReported?: Counter;
  /** Incremented on every applied change; lets readers skip work when nothing moved. */
  revision = 0;

  constructor(opts: MarathonViewOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    if (opts.registry) {
      const view = this;
      new Gauge({
        name: 'citadel_marathon_invalid_workloads',
        help: 'Marathon apps and pods whose namespace or service account is invalid: they get no identity.',
        registers: [opts.registry],
        collect() {
          this.set(view.invalidCount);
        },
      });
      new Gauge({
        name: 'citadel_marathon_workloads',
        help: 'Marathon apps and pods with a valid identity.',
        registers: [opts.registry],
        collect() {
          this.set(view.entries.size - view.invalidCount);
        },
      });
      this.invalidReported = new Counter({
        name: 'citadel_marathon_invalid_workloads_reported_total',
        help: 'Times an app or pod was found (or changed) with an invalid identity.',
        registers: [opts.registry],
      });
    }
  }

  workloads(): Workload[] {
    const out: Workload[] = [];
    for (const e of this.entries.values()) if (!isInvalid(e)) out.push(e);
    return out;
  }

  invalid(): InvalidWorkload[] {
    const out: InvalidWorkload[] = [];
    for (const e of this.entries.values()) if (isInvalid(e)) out.push(e);
    return out;
  }

  /** The number of apps and pods that get no identity because of an invalid name. */
  invalidWorkloadCount(): number {
    return this.invalidCount;
  }

  get(kind: 'app' | 'pod', id: string): ViewEntry | undefined {
    return this.entries.get(keyOf(kind, id));
  }

  /** Every namespace holding an app or pod -> its service accounts, always including 'default'. */
  desiredAccounts(): ReadonlyMap<string, ReadonlySet<string>> {
    const accountsOf = (ns: string) => new Set([DEFAULT_SERVICE_ACCOUNT, ...this.accounts.get(ns)!.keys()]);
    if (!this.desiredCache) {
      this.desiredCache = new Map([...this.accounts.keys()].map((ns) => [ns, accountsOf(ns)]));
      this.dirtyNamespaces.clear();
    } else if (this.dirtyNamespaces.size) {
      // A new map that shares the unchanged namespaces' sets: a deployment costs one namespace, not all.
      const m = new Map(this.desiredCache);
      for (const ns of this.dirtyNamespaces) {
        if (this.accounts.has(ns)) m.set(ns, accountsOf(ns));
        else m.delete(ns);
      }
      this.dirtyNamespaces.clear();
      this.desiredCache = m;
    }
    return this.desiredCache; // replaced, never changed, when the view changes: callers may hold it
  }

  /** Identities with a live (not terminal) task or pod instance on this agent host. */
  identitiesOnHost(host: string): AccountRef[] {
    const ids = this.byHost.get(host);
    return ids ? [...ids.keys()].map(parseAccountKey) : [];
  }

  /** The agent hosts where the identity has a live task or pod instance. */
  hostsOf(account: AccountRef): Set<string> {
    return new Set(this.byIdentity.get(accountKey(account))?.keys());
  }

  isPlacedOn(account: AccountRef, host: string): boolean {
    return this.byHost.get(host)?.has(accountKey(account)) ?? false;
  }

  /**
   * Called after each applied change (event or re-list) with what it touched; an entry that
   * changed is a new object, an unchanged one keeps its identity. Returns the unsubscribe function.
   */
  onChange(listener: (change: ViewChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // --- mutations, used by MarathonClient -------------------------------------------------

  /** Replaces the whole view (a full re-list); always notifies. */
  replaceAll(entries: ViewEntry[]): void {
    this.replaceKeys(this.entries.keys(), entries);
    this.notify();
  }

  /** Replaces every workload whose id lies under the group `groupId` (a group re-read). */
  replaceGroup(groupId: string, entries: ViewEntry[]): boolean {
    const id = groupId.length > 1 && groupId.endsWith('/') ? groupId.slice(0, -1) : groupId;
    const scope = id === '/' ? this.entries.keys() : (this.byGroup.get(id) ?? new Set<string>()).values();
    const changed = this.replaceKeys(scope, entries);
    if (changed) this.notify();
    return changed;
  }

  /** Sets (or, with `entry` undefined, removes) one app or pod; notifies if anything changed. */
  put(kind: 'app' | 'pod', id: string, entry: ViewEntry | undefined): boolean {
    const changed = this.set(keyOf(kind, id), entry);
    if (changed) this.notify();
    return changed;
  }

  /** Sets `entries` and removes whatever else `scope` (existing keys) held. */
  private replaceKeys(scope: Iterable<string>, entries: ViewEntry[]): boolean {
    const stale = new Set(scope);
    let changed = false;
    for (const e of entries) {
      const k = keyOf(e.kind, e.id);
      stale.delete(k);
      changed = this.set(k, e) || changed;
    }
    for (const k of stale) changed = this.set(k, undefined) || changed;
    return changed;
  }

  private indexGroups(key: string, id: string, add: boolean): void {
    for (let i = id.indexOf('/', 1); i > 0; i = id.indexOf('/', i + 1)) {
      const group = id.slice(0, i);
      let keys = this.byGroup.get(group);
      if (add) {
        if (!keys) this.byGroup.set(group, (keys = new Set()));
        keys.add(key);
      } else if (keys) {
        keys.delete(key);
        if (keys.size === 0) this.byGroup.delete(group);
      }
    }
  }

  private set(key: string, entry: ViewEntry | undefined): boolean {
    const old = this.entries.get(key);
    // compared by value, with no signature kept per entry: a re-list that finds nothing new changes nothing
    if (entry === undefined ? old === undefined : old !== undefined && isDeepStrictEqual(old, entry)) return false;
    if (old) this.account(old, -1);
    if (entry && !old) this.indexGroups(key, entry.id, true);
    if (!entry && old) this.indexGroups(key, old.id, false);
    if (entry) {
      this.entries.set(key, entry);
      this.account(entry, +1);
      if (isInvalid(entry) && !(old && isInvalid(old) && old.reason === entry.reason)) {
        this.log.warn('marathon workload has no identity', { kind: entry.kind, id: entry.id, reason: entry.reason });
        this.invalidReported?.inc();
      }
    } else {
      this.entries.delete(key);
    }
    this.changed.push({ kind: (entry ?? old)!.kind, id: (entry ?? old)!.id });
    this.revision++;
    return true;
  }

  private account(e: ViewEntry, d: 1 | -1): void {
    if (isInvalid(e)) {
      this.invalidCount += d;
      return;
    }
    bump2(this.accounts, e.namespace, e.serviceAccount, d);
    this.dirtyNamespaces.add(e.namespace);
    const ik = accountKey(e);
    for (const inst of e.instances) {
      if (!isLive(inst)) continue;
      bump2(this.byHost, inst.host, ik, d);
      bump2(this.byIdentity, ik, inst.host, d);
    }
  }

  private notify(): void {
    const change: ViewChange = { workloads: this.changed };
    this.changed = [];
    for (const l of [...this.listeners]) {
      try {
        l(change);
      } catch (err) {
        this.log.error('marathon view listener failed', { error: String(err) });
      }
    }
  }
}
