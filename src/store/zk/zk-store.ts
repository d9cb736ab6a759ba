/**
 * The ZooKeeper store, for several CA replicas: `zk://host:port[,host:port...]/<chroot>`.
 *
 *   <chroot>/secrets/<namespace>/istio.<sa>   one secret, JSON (private key sealed when a KEK is set)
 *   <chroot>/ca/istio-ca-secret                the root, created once (CREATE fails for the loser)
 *   <chroot>/tokens/<sha256 hex>               join tokens, consumed by delete-with-version
 *   <chroot>/election/                         leader election (election.ts)
 *   <chroot>/nodes/<host>                      what the CA replicas know of each node
 *   <chroot>/evictions/<host>@<epoch ms>       `citadel node evict`, one immutable znode per eviction
 *   <chroot>/policies                          the policy set, JSON (policy-znode.ts)
 *
 * Versions are znode versions; every conditional write is a compare-and-set in ZooKeeper itself.
 * With `--zk-auth-file`, every znode is created (by ZkSession) with an ACL granting everything to
 * that identity alone, and opening refuses a tree whose top is not so protected.
 */
import os from 'node:os';
import { EventEmitter } from 'node:events';
import zookeeper from 'node-zookeeper-client';
import { ConflictError, UserError, errorMessage } from '../../common/errors';
import { Logger, silentLogger } from '../../common/log';
import { checkSecretRef } from '../../pki/identity';
import type { CanonicalPolicy } from '../../mesh/policy';
import {
  CaSecret,
  JoinTokenRecord,
  Kek,
  latestEvictions,
  NodeEviction,
  NodeRecord,
  PolicyEvent,
  Secret,
  Store,
  StoreEvent,
  StoreOptions,
  StoredPolicies,
  StoredSecret,
  isSealed,
  type LeaderElection,
} from '../store';
import { decodeSecretRecord, encodeSecretRecord } from '../secret-record';
import { checkTokenHash, decodeJoinTokenRecord, decodeNodeEviction, decodeNodeRecord, encodeRecord, evictionName, hostSegment, isEvictionName } from '../records';
import { aclProblem, ZkAuth } from './auth';
import { ZkLeaderElection } from './election';
import { ZkPolicies } from './policy-znode';
import { ZkConnectionState, ZkSession, ZkStat, zkErrorCode } from './session';
import { parseZkUrl } from './url';

const { Exception, Event } = zookeeper;

export interface ZkStoreOptions extends StoreOptions {
  /** Overrides `?sessionTimeout=` of the URL; default 10 s. */
  sessionTimeoutMs?: number;
  connectTimeoutMs?: number;
  opTimeoutMs?: number;
  /** `--zk-auth-file`: credentials to present, and the identity every created znode is restricted to. */
  auth?: ZkAuth;
  /**
   * With `auth`, opening refuses a tree whose chroot or top-level znodes anyone else may use
   * (default). `citadel store secure` opens with false, to fix exactly that.
   */
  requireSecured?: boolean;
  logger?: Logger;
}

export async function openZkStore(url: string, opts: ZkStoreOptions = {}): Promise<ZkStore> {
  const target = parseZkUrl(url);
  const log = (opts.logger ?? silentLogger).child({ store: target.url });
  if (!opts.auth) log.warn('znodes are created with an open ACL: anyone who can reach ZooKeeper can read and change them; pass --zk-auth-file', {});
  const session = await ZkSession.open(target.servers, target.url, {
    sessionTimeoutMs: opts.sessionTimeoutMs ?? target.sessionTimeoutMs,
    connectTimeoutMs: opts.connectTimeoutMs,
    opTimeoutMs: opts.opTimeoutMs,
    auth: opts.auth,
    logger: log,
  });
  const store = new ZkStore(target.url, target.chroot, session, opts.kek, log, opts.auth);
  try {
    await store.init(opts.requireSecured ?? true);
  } catch (err) {
    await session.close();
    throw err;
  }
  return store;
}

export class ZkStore implements Store {
  private readonly secretsPath: string;
  private readonly caPath: string;
  private readonly tokensPath: string;
  private readonly nodesPath: string;
  private readonly evictionsPath: string;
  readonly electionPath: string;
  /** Namespace znodes made (or being made) by this process: one create per namespace, shared by concurrent writers. */
  private readonly namespaces = new Map<string, Promise<void>>();
  private readonly watcher = new SecretWatcher(this);
  private readonly evictionWatcher: EvictionWatcher;
  private readonly stateEmitter = new EventEmitter();
  private readonly policies: ZkPolicies;

  constructor(
    readonly url: string,
    readonly chroot: string,
    readonly session: ZkSession,
    private readonly kek: Kek | undefined,
    readonly log: Logger,
    private readonly auth?: ZkAuth,
  ) {
    this.secretsPath = `${chroot}/secrets`;
    this.caPath = `${chroot}/ca/istio-ca-secret`;
    this.tokensPath = `${chroot}/tokens`;
    this.nodesPath = `${chroot}/nodes`;
    this.evictionsPath = `${chroot}/evictions`;
    this.electionPath = `${chroot}/election`;
    this.evictionWatcher = new EvictionWatcher(session, this.evictionsPath, log);
    this.policies = new ZkPolicies(session, `${chroot}/policies`, (path, data) => this.session.create(path, data), log);
    this.stateEmitter.setMaxListeners(0);
  }

  /**
   * Creates the top-level znodes (idempotent, safe when several replicas start at once). With
   * credentials and `requireSecured`, then checks that the chroot and everything directly under
   * it are restricted to them: a tree made before `--zk-auth-file` (or squatted by someone else)
   * is refused until `citadel store secure` has run.
   */
  async init(requireSecured = true): Promise<void> {
    for (const p of [this.secretsPath, `${this.chroot}/ca`, this.tokensPath, this.electionPath, this.nodesPath, this.evictionsPath]) await this.session.mkdirp(p);
    if (!this.auth || !requireSecured) return;
    const top = [this.chroot, ...((await this.session.getChildren(this.chroot)) ?? []).map((c) => `${this.chroot}/${c}`)];
    for (const p of top) {
      const got = await this.session.getAcl(p);
      const problem = got && aclProblem(got.acl, this.auth);
      if (problem) {
        throw new UserError(`znode ${p} is not protected: ${problem}; run \`citadel store secure --store ${this.url} --zk-auth-file <file>\` once to restrict the whole tree`);
      }
    }
  }

  /**
   * Restricts every znode under the chroot (the chroot included) to this store's credentials:
   * lists the whole tree, then sets the ACL of each znode, pipelined. Returns how many it set;
   * `progress` hears (done, total) along the way.
   */
  async secureTree(progress: (done: number, total: number) => void = () => {}): Promise<number> {
    if (!this.auth) throw new UserError('securing a ZooKeeper store needs --zk-auth-file: the credentials every znode will be restricted to');
    const paths: string[] = [];
    let level = [this.chroot];
    while (level.length > 0) {
      paths.push(...level);
      const children = await Promise.all(level.map(async (p) => ((await this.session.getChildren(p)) ?? []).map((c) => `${p}/${c}`)));
      level = children.flat();
    }
    let done = 0;
    const BATCH = 256;
    for (let i = 0; i < paths.length; i += BATCH) {
      await Promise.all(
        paths.slice(i, i + BATCH).map(async (p) => {
          await this.session.setAcl(p);
          done++;
        }),
      );
      progress(done, paths.length);
    }
    return done;
  }

  /** `connected`, `disconnected` (calls fail fast), `expired` (a new session is being made), `closed`. */
  get connectionState(): ZkConnectionState {
    return this.session.connectionState;
  }

  onConnectionState(cb: (state: ZkConnectionState) => void): () => void {
    return this.session.onState(cb);
  }

  unavailableReason(): string | undefined {
    const state = this.session.connectionState;
    return state === 'connected' ? undefined : `ZooKeeper ${state}`;
  }

  onAvailable(listener: () => void): () => void {
    return this.session.onState((state) => state === 'connected' && listener());
  }

  /** Joins the leader election of this store's replicas (ephemeral sequential znodes under <chroot>/election). */
  leaderElection(candidate = `${os.hostname()}:${process.pid}`): Promise<LeaderElection> {
    return ZkLeaderElection.start(this.session, this.electionPath, candidate, this.log);
  }

  secretPath(namespace: string, name: string): string {
    checkSecretName(namespace, name);
    return `${this.secretsPath}/${namespace}/${name}`;
  }

  async getSecret(namespace: string, name: string): Promise<StoredSecret | undefined> {
    const path = this.secretPath(namespace, name);
    const got = await this.session.getData(path);
    return got && this.decodeSecret(path, got.data, got.stat.version);
  }

  async listSecrets(namespace?: string): Promise<StoredSecret[]> {
    const namespaces = namespace !== undefined ? [namespace] : ((await this.session.getChildren(this.secretsPath)) ?? []);
    if (namespace !== undefined) checkSecretName(namespace, 'istio.default');
    const paths = (
      await Promise.all(
        namespaces.map(async (ns) => ((await this.session.getChildren(`${this.secretsPath}/${ns}`)) ?? []).map((n) => `${this.secretsPath}/${ns}/${n}`)),
      )
    ).flat();
    // One socket pipelines all reads: thousands of getData cost about one round trip each way.
    const read = await Promise.all(paths.map(async (p) => ({ p, got: await this.session.getData(p) })));
    const out: StoredSecret[] = [];
    for (const { p, got } of read) if (got) out.push(this.decodeSecret(p, got.data, got.stat.version));
    return out.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  }

  async putSecret(secret: Secret, expectedVersion?: number | null): Promise<number> {
    const path = this.secretPath(secret.namespace, secret.name);
    const data = this.encodeSecret(secret);
    const what = `secret ${secret.namespace}/${secret.name}`;
    if (typeof expectedVersion === 'number') {
      try {
        return (await this.session.setData(path, data, expectedVersion)).version;
      } catch (err) {
        const code = zkErrorCode(err);
        if (code === Exception.BAD_VERSION) throw new ConflictError(`${what} changed: it is no longer version ${expectedVersion}`);
        if (code === Exception.NO_NODE) throw new ConflictError(`${what} was deleted: it is no longer version ${expectedVersion}`);
        throw err;
      }
    }
    for (;;) {
      if (expectedVersion === undefined) {
        try {
          return (await this.session.setData(path, data, -1)).version;
        } catch (err) {
          if (zkErrorCode(err) !== Exception.NO_NODE) throw err;
        }
      }
      try {
        await this.createWithParent(path, data, secret.namespace);
        return 0;
      } catch (err) {
        if (zkErrorCode(err) !== Exception.NODE_EXISTS) throw err;
        if (expectedVersion === null) throw new ConflictError(`${what} already exists`);
        // created by someone else between our setData and create: an unconditional write overwrites it
      }
    }
  }

  async deleteSecret(namespace: string, name: string, expectedVersion?: number): Promise<boolean> {
    const path = this.secretPath(namespace, name);
    try {
      await this.session.remove(path, expectedVersion ?? -1);
      return true;
    } catch (err) {
      const code = zkErrorCode(err);
      if (code === Exception.NO_NODE) return false;
      if (code === Exception.BAD_VERSION) throw new ConflictError(`secret ${namespace}/${name} changed: it is no longer version ${expectedVersion}`);
      throw err;
    }
  }

  async getCaSecret(): Promise<CaSecret | undefined> {
    const got = await this.session.getData(this.caPath);
    return got && this.decodeCa(got.data);
  }

  async createCaSecretIfAbsent(candidate: CaSecret): Promise<CaSecret> {
    try {
      await this.session.create(this.caPath, this.encodeCa(candidate));
      this.log.info('stored a new CA secret');
      return { ...candidate };
    } catch (err) {
      if (zkErrorCode(err) !== Exception.NODE_EXISTS) throw err;
    }
    const existing = await this.getCaSecret();
    if (!existing) throw new ConflictError('the CA secret was deleted while it was being created; retry');
    return existing;
  }

  async replaceCaSecret(expected: CaSecret, next: CaSecret): Promise<void> {
    const got = await this.session.getData(this.caPath);
    const current = got && this.decodeCa(got.data);
    if (!got || !current || current.caCertPem !== expected.caCertPem || current.caKeyPem !== expected.caKeyPem) {
      throw new ConflictError('the CA secret changed or is missing; re-read it and retry');
    }
    try {
      await this.session.setData(this.caPath, this.encodeCa(next), got.stat.version);
    } catch (err) {
      if (zkErrorCode(err) === Exception.BAD_VERSION) throw new ConflictError('the CA secret changed while it was being replaced; retry');
      throw err;
    }
  }

  async putJoinToken(record: JoinTokenRecord): Promise<void> {
    const path = this.tokenPath(record.hash);
    try {
      await this.session.create(path, Buffer.from(JSON.stringify(record)));
    } catch (err) {
      if (zkErrorCode(err) === Exception.NODE_EXISTS) throw new ConflictError(`join token ${record.hash.slice(0, 12)}… already exists`);
      throw err;
    }
  }

  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    const hashes = ((await this.session.getChildren(this.tokensPath)) ?? []).filter((h) => /^[0-9a-f]{64}$/.test(h));
    const read = await Promise.all(hashes.map(async (h) => ({ path: `${this.tokensPath}/${h}`, got: await this.session.getData(`${this.tokensPath}/${h}`) })));
    return read.filter((r) => r.got).map((r) => decodeJoinTokenRecord(`znode ${r.path}`, r.got!.data.toString('utf8')));
  }

  async putNodeRecord(record: NodeRecord): Promise<void> {
    const path = `${this.nodesPath}/${hostSegment(record.host)}`;
    const data = Buffer.from(encodeRecord(record));
    try {
      await this.session.setData(path, data, -1);
    } catch (err) {
      if (zkErrorCode(err) !== Exception.NO_NODE) throw err;
      try {
        await this.session.create(path, data);
      } catch (err2) {
        if (zkErrorCode(err2) !== Exception.NODE_EXISTS) throw err2;
        await this.session.setData(path, data, -1); // another replica created it meanwhile
      }
    }
  }

  async listNodeRecords(): Promise<NodeRecord[]> {
    const hosts = (await this.session.getChildren(this.nodesPath)) ?? [];
    const read = await Promise.all(hosts.map(async (h) => ({ path: `${this.nodesPath}/${h}`, got: await this.session.getData(`${this.nodesPath}/${h}`) })));
    return read
      .filter((r) => r.got)
      .map((r) => decodeNodeRecord(`znode ${r.path}`, r.got!.data.toString('utf8')))
      .sort((a, b) => a.host.localeCompare(b.host));
  }

  async putNodeEviction(eviction: NodeEviction): Promise<void> {
    try {
      await this.session.create(`${this.evictionsPath}/${evictionName(eviction)}`, Buffer.from(encodeRecord(eviction)));
    } catch (err) {
      if (zkErrorCode(err) !== Exception.NODE_EXISTS) throw err; // the same eviction, written twice
    }
  }

  listNodeEvictions(): Promise<NodeEviction[]> {
    return this.evictionWatcher.read();
  }

  watchNodeEvictions(listener: (evictions: NodeEviction[]) => void): () => void {
    return this.evictionWatcher.add(listener);
  }

  async consumeJoinToken(hash: string): Promise<JoinTokenRecord | undefined> {
    const path = this.tokenPath(hash);
    for (;;) {
      const got = await this.session.getData(path);
      if (!got) return undefined;
      try {
        // Delete only the version we read: of two consumers racing, exactly one delete succeeds.
        await this.session.remove(path, got.stat.version);
      } catch (err) {
        const code = zkErrorCode(err);
        if (code === Exception.NO_NODE) return undefined;
        if (code === Exception.BAD_VERSION) continue;
        throw err;
      }
      return decodeJoinTokenRecord(`znode ${path}`, got.data.toString('utf8'));
    }
  }

  getPolicies(): Promise<StoredPolicies> {
    return this.policies.get();
  }

  putPolicies(documents: readonly CanonicalPolicy[], expectedVersion: number): Promise<number> {
    return this.policies.put(documents, expectedVersion);
  }

  watchPolicies(listener: (event: PolicyEvent) => void): () => void {
    return this.policies.watch(listener);
  }

  watch(listener: (event: StoreEvent) => void): () => void {
    return this.watcher.add(listener);
  }

  /** Resolves once the watches for watch() listeners are armed and all events so far delivered. */
  watchesSettled(): Promise<void> {
    return this.watcher.idle();
  }

  async close(): Promise<void> {
    this.watcher.stop();
    this.evictionWatcher.stop();
    this.policies.stop();
    await this.session.close();
  }

  private tokenPath(hash: string): string {
    return `${this.tokensPath}/${checkTokenHash(hash)}`;
  }

  private async createWithParent(path: string, data: Buffer, namespace: string): Promise<void> {
    await this.ensureNamespace(namespace);
    try {
      await this.session.create(path, data);
    } catch (err) {
      if (zkErrorCode(err) !== Exception.NO_NODE) throw err;
      // the namespace znode was removed by hand since we made it
      this.namespaces.delete(namespace);
      await this.ensureNamespace(namespace);
      await this.session.create(path, data);
    }
  }

  /**
   * The namespace's znode under the secrets root (made at open). One create, not a mkdirp: the
   * client's mkdirp walks every ancestor, and each NODE_EXISTS it meets is an exception with a
   * stack trace (a thousand namespaces written at once made tens of thousands of them).
   */
  private ensureNamespace(namespace: string): Promise<void> {
    let made = this.namespaces.get(namespace);
    if (!made) {
      made = this.session
        .create(`${this.secretsPath}/${namespace}`, Buffer.alloc(0))
        .then(
          () => undefined,
          (err) => {
            if (zkErrorCode(err) === Exception.NODE_EXISTS) return;
            this.namespaces.delete(namespace);
            if (zkErrorCode(err) === Exception.NO_NODE) return this.session.mkdirp(`${this.secretsPath}/${namespace}`); // the secrets root itself was removed
            throw err;
          },
        );
      this.namespaces.set(namespace, made);
    }
    return made;
  }

  private encodeSecret(s: Secret): Buffer {
    return Buffer.from(encodeSecretRecord({ ...s, keyPem: this.kek ? this.kek.seal(s.keyPem) : s.keyPem }));
  }

  private decodeSecret(path: string, data: Buffer, version: number): StoredSecret {
    const record = decodeSecretRecord(`znode ${path}`, data.toString('utf8'));
    return {
      namespace: record.namespace,
      name: record.name,
      certChainPem: record.certChainPem,
      keyPem: this.openKey(record.keyPem, `secret ${record.namespace}/${record.name}`),
      rootCertPem: record.rootCertPem,
      metadata: record.metadata,
      version,
    };
  }


  private encodeCa(ca: CaSecret): Buffer {
    return Buffer.from(JSON.stringify({ v: 1, caCertPem: ca.caCertPem, caKeyPem: this.kek ? this.kek.seal(ca.caKeyPem) : ca.caKeyPem }));
  }

  private decodeCa(data: Buffer): CaSecret {
    const r = parseJson(this.caPath, data) as { v?: unknown; caCertPem?: unknown; caKeyPem?: unknown };
    if (r.v !== 1 || typeof r.caCertPem !== 'string' || typeof r.caKeyPem !== 'string') {
      throw new Error(`znode ${this.caPath} does not hold a citadel CA secret (format v1)`);
    }
    return { caCertPem: r.caCertPem, caKeyPem: this.openKey(r.caKeyPem, 'the CA secret') };
  }

  /** Sealed keys need the KEK; plain ones (written before a KEK was set) pass through until a rekey seals them. */
  private openKey(value: string, what: string): string {
    if (!isSealed(value)) return value;
    if (!this.kek) throw new UserError(`${what} in ${this.url} has a sealed private key; pass the --kek-file it was sealed with`);
    try {
      return this.kek.open(value);
    } catch (err) {
      throw new UserError(`${what} in ${this.url}: ${errorMessage(err)}`);
    }
  }
}

/**
 * The evictions under `<chroot>/evictions`, kept current with a child watch (each eviction is a
 * new, immutable znode), re-armed and re-read after a reconnect or a new session; listeners hear
 * the latest eviction of each host whenever that changes.
 */
class EvictionWatcher {
  private readonly listeners = new Set<(e: NodeEviction[]) => void>();
  /** znode name -> the eviction it holds (immutable, so read once). */
  private readonly known = new Map<string, NodeEviction>();
  private last: string | undefined;
  private current: NodeEviction[] | undefined;
  private queue: Promise<void> = Promise.resolve();
  private unsubscribe: Array<() => void> = [];
  private running = false;
  private readonly onZkEvent = () => this.refresh();

  constructor(private readonly session: ZkSession, private readonly dir: string, private readonly log: Logger) {}

  /** The latest eviction of each host, read now (watching nothing). */
  async read(): Promise<NodeEviction[]> {
    return latestEvictions(await this.readAll(undefined));
  }

  add(listener: (e: NodeEviction[]) => void): () => void {
    this.listeners.add(listener);
    if (!this.running) this.start();
    else this.queue.then(() => this.current && this.listeners.has(listener) && listener(this.current));
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.running = false;
    for (const off of this.unsubscribe.splice(0)) off();
    this.listeners.clear();
  }

  private start(): void {
    this.running = true;
    let wasDown = false;
    this.unsubscribe.push(
      this.session.onState((state) => {
        if (state !== 'connected') wasDown = true;
        else if (wasDown) {
          wasDown = false;
          this.refresh();
        }
      }),
    );
    this.refresh();
  }

  private refresh(): void {
    this.queue = this.queue.then(async () => {
      if (!this.running) return;
      try {
        const now = latestEvictions(await this.readAll(this.onZkEvent));
        const text = JSON.stringify(now);
        if (text === this.last) return;
        this.last = text;
        this.current = now;
        for (const l of [...this.listeners]) l(now);
      } catch (err) {
        // Disconnected: the reconnect reads again.
        this.log.debug('eviction watch refresh failed; will retry on reconnect', { error: errorMessage(err) });
      }
    });
  }

  private async readAll(watcher: ((event: zookeeper.Event) => void) | undefined): Promise<NodeEviction[]> {
    const names = ((await this.session.getChildren(this.dir, watcher)) ?? []).filter(isEvictionName);
    await Promise.all(
      names
        .filter((n) => !this.known.has(n))
        .map(async (n) => {
          const got = await this.session.getData(`${this.dir}/${n}`);
          if (got) this.known.set(n, decodeNodeEviction(`znode ${this.dir}/${n}`, got.data.toString('utf8')));
        }),
    );
    return names.map((n) => this.known.get(n)).filter((e): e is NodeEviction => e !== undefined);
  }
}

/**
 * Turns ZooKeeper's one-shot watches into a stream of StoreEvents: a child watch on secrets/ and
 * on every namespace, an existence watch on every secret, each re-armed when it fires; after a
 * reconnect or a new session everything is re-armed and compared, and a `resync` is sent.
 */
class SecretWatcher {
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  /** namespace -> secret name -> last seen znode version. */
  private readonly known = new Map<string, Map<string, number>>();
  private running = false;
  private queue: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void)[] = [];
  private readonly onZkEvent = (event: zookeeper.Event) => this.enqueue(() => this.handle(event));

  constructor(private readonly store: ZkStore) {}

  add(listener: (e: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    if (!this.running) this.start();
    return () => {
      this.listeners.delete(listener);
    };
  }

  stop(): void {
    this.running = false;
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    this.listeners.clear();
  }

  /** Resolves when every event so far has been handled (tests). */
  idle(): Promise<void> {
    return this.queue;
  }

  private start(): void {
    this.running = true;
    const { session } = this.store;
    let wasDown = false;
    this.unsubscribe.push(
      session.onState((state) => {
        if (state !== 'connected') {
          wasDown = true;
          return;
        }
        if (!wasDown) return;
        wasDown = false;
        this.enqueue(async () => {
          await this.syncAll(true);
          this.emit({ type: 'resync' });
        });
      }),
    );
    this.enqueue(() => this.syncAll(false));
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(async () => {
      if (!this.running) return;
      try {
        await task();
      } catch (err) {
        // Disconnected mid-way: the reconnect re-runs syncAll, which compares everything again.
        this.store.log.debug('watch refresh failed; will resync on reconnect', { error: errorMessage(err) });
      }
    });
  }

  private emit(event: StoreEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        this.store.log.error('store watch listener threw', { error: errorMessage(err) });
      }
    }
  }

  private get root(): string {
    return `${this.store.chroot}/secrets`;
  }

  private async syncAll(emit: boolean): Promise<void> {
    const namespaces = (await this.store.session.getChildren(this.root, this.onZkEvent)) ?? [];
    this.store.log.debug('watches armed', { namespaces: namespaces.length, session: this.store.session.credentials().sessionId.toString('hex') });
    for (const ns of [...this.known.keys()]) if (!namespaces.includes(ns)) this.dropNamespace(ns, emit);
    await Promise.all(namespaces.map((ns) => this.syncNamespace(ns, emit, true)));
  }

  /**
   * A namespace came or went: re-arm the list and read only the new namespaces. Known ones have
   * their own watches; re-checking every secret here made a bulk create quadratic.
   */
  private async syncNamespaceList(): Promise<void> {
    const namespaces = (await this.store.session.getChildren(this.root, this.onZkEvent)) ?? [];
    const present = new Set(namespaces);
    for (const ns of [...this.known.keys()]) if (!present.has(ns)) this.dropNamespace(ns, true);
    await Promise.all(namespaces.filter((ns) => !this.known.has(ns)).map((ns) => this.syncNamespace(ns, true, false)));
  }

  private dropNamespace(ns: string, emit: boolean): void {
    for (const name of this.known.get(ns)?.keys() ?? []) if (emit) this.emit({ type: 'delete', namespace: ns, name });
    this.known.delete(ns);
  }

  /** Re-reads a namespace's children; with `recheck`, also re-arms and compares versions of known secrets. */
  private async syncNamespace(ns: string, emit: boolean, recheck: boolean): Promise<void> {
    const names = await this.store.session.getChildren(`${this.root}/${ns}`, this.onZkEvent);
    if (!names) return this.dropNamespace(ns, emit);
    let known = this.known.get(ns);
    if (!known) this.known.set(ns, (known = new Map()));
    for (const name of [...known.keys()]) {
      if (names.includes(name)) continue;
      known.delete(name);
      if (emit) this.emit({ type: 'delete', namespace: ns, name });
    }
    await Promise.all(
      names.map(async (name) => {
        const before = known.get(name);
        if (before !== undefined && !recheck) return;
        const stat = await this.store.session.exists(`${this.root}/${ns}/${name}`, this.onZkEvent);
        if (!stat) return; // gone again; the child watch tells us
        known.set(name, stat.version);
        if (emit && before !== stat.version) this.emit({ type: 'put', namespace: ns, name });
      }),
    );
  }

  private async handle(event: zookeeper.Event): Promise<void> {
    const rel = event.getPath().slice(this.root.length + 1);
    const [ns, name] = rel ? rel.split('/') : [];
    const type = event.getType();
    if (!ns) {
      if (type === Event.NODE_CHILDREN_CHANGED) await this.syncNamespaceList();
      return;
    }
    if (!name) {
      if (type === Event.NODE_CHILDREN_CHANGED) await this.syncNamespace(ns, true, false);
      else if (type === Event.NODE_DELETED) this.dropNamespace(ns, true);
      return;
    }
    const known = this.known.get(ns);
    if (type === Event.NODE_DELETED) {
      if (known?.delete(name)) this.emit({ type: 'delete', namespace: ns, name });
      return;
    }
    if (type === Event.NODE_DATA_CHANGED || type === Event.NODE_CREATED) {
      // Report the change even if the secret is gone again by now; its child watch reports the delete.
      let map = known;
      if (!map) this.known.set(ns, (map = new Map()));
      if (!map.has(name)) map.set(name, -1);
      this.emit({ type: 'put', namespace: ns, name });
      const stat: ZkStat | undefined = await this.store.session.exists(event.getPath(), this.onZkEvent);
      if (stat && map.has(name)) map.set(name, stat.version);
    }
  }
}

function checkSecretName(namespace: string, name: string): void {
  const problem = checkSecretRef(namespace, name);
  if (problem) throw new Error(problem);
}

function parseJson(path: string, data: Buffer): unknown {
  try {
    const value: unknown = JSON.parse(data.toString('utf8'));
    if (value && typeof value === 'object') return value;
  } catch {
    // reported below
  }
  throw new Error(`znode ${path} does not hold JSON written by citadel`);
}
