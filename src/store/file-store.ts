import * as fsSync from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { nativeAddon } from '../common/native';
import { FilesystemSync, fsyncDir, isLeftover, uniqueSuffix, writeFileAtomic, writeNewFileDurable } from '../common/atomic-file';
import { ConflictError, UserError } from '../common/errors';
import { decodeSecretRecord, encodeSecretRecord } from './secret-record';
import { checkTokenHash, decodeJoinTokenRecord, decodeNodeEviction, decodeNodeRecord, encodeRecord, evictionName, hostSegment, isEvictionName } from './records';
import { LOCK_FILE, WriterLock } from './writer-lock';
import { checkExpected, currentVersion, SecretWriter } from './secret-writer';
import { checkSecretRef } from '../pki/identity';
import type { CanonicalPolicy } from '../mesh/policy';
import { PolicyFiles } from './policy-files';
import {
  alwaysLeader, CaSecret, isSealed, JoinTokenRecord, Kek, latestEvictions, LeaderElection, NodeEviction, NodeRecord, PolicyEvent, Secret, SecretMetadata, Store, StoredPolicies, StoredSecret, StoreEvent, StoreOptions,
} from './store';

/**
 * The embedded default store: a directory on local disk,
 *
 *   <dir>/secrets/<namespace>/istio.<sa>        one secret: JSON of its three PEMs, metadata and version
 *   <dir>/ca/istio-ca-secret/{ca-cert.pem,ca-key.pem}
 *   <dir>/tokens/<sha256>.json
 *   <dir>/policies/<version>.json             the policy set (policy-files.ts: compare-and-set across processes)
 *   <dir>/nodes/<host>.json                       what the CA knows of each node
 *   <dir>/evictions/<host>@<epoch ms>.json        `citadel node evict`, one file per eviction
 *   <dir>/citadel.lock                            the writer lock (writer-lock.ts)
 *
 * A secret is one file, the same document the ZooKeeper store keeps in a znode
 * (secret-record.ts), so a secret costs one inode. It is written all or nothing: a temporary file
 * `.istio.<sa>.tmp-*`, made durable by a shared syncfs, is renamed over the secret's name, and a
 * second shared syncfs makes the rename durable before the writer hears of it. A reader or a
 * writer killed at any moment sees the old secret or the new one, never a mix; temporary files
 * are removed on the next open. One process writes a store directory at a time: it holds the
 * writer lock (`exclusive`), and a second writer refuses to start. The writes run
 * in batches on writer threads (secret-writer.ts), so that a reconcile's signing overlaps its
 * disk work; reads are one small synchronous read on the caller's thread.
 *
 * Stores written by earlier versions kept a secret as a symlink to a directory of four files
 * (`.istio.<sa>.v<N>/{cert-chain.pem,key.pem,root-cert.pem,metadata.json}`); open converts them.
 */
export class FileStore implements Store {
  readonly url: string;
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly kek?: Kek;
  private readonly sync: FilesystemSync;
  /** Secret writes, batched on a worker thread. */
  private readonly writer: SecretWriter;
  private readonly evictionWatch: EvictionWatch;
  private readonly policies: PolicyFiles;

  private constructor(readonly dir: string, opts: StoreOptions, private readonly lock: WriterLock | undefined) {
    this.url = `file:${dir}`;
    this.sync = new FilesystemSync(dir);
    this.writer = new SecretWriter(dir);
    this.policies = new PolicyFiles(path.join(dir, 'policies'));
    this.kek = opts.kek;
    this.evictionWatch = new EvictionWatch(path.join(dir, 'evictions'), () => this.listNodeEvictions());
  }

  static async open(dir: string, opts: StoreOptions = {}): Promise<FileStore> {
    const abs = path.resolve(dir);
    for (const sub of ['secrets', 'ca', 'tokens', 'policies', 'nodes', 'evictions']) await fs.mkdir(path.join(abs, sub), { recursive: true, mode: 0o700 });
    // The lock file is part of the layout (never removed: a lock file unlinked under a waiting
    // process would let two hold "the" lock), so a writer that comes and goes changes no listing.
    await (await fs.open(path.join(abs, LOCK_FILE), 'a', 0o600)).close();
    const lock = opts.exclusive ? await WriterLock.acquire(abs) : undefined;
    try {
      await markTopDir(path.join(abs, 'secrets'));
      const store = new FileStore(abs, opts, lock);
      await store.collectGarbage();
      return store;
    } catch (err) {
      lock?.release();
      throw err;
    }
  }

  private secretFile(ns: string, name: string): string {
    const problem = checkSecretRef(ns, name);
    if (problem) throw new Error(problem);
    return path.join(this.dir, 'secrets', ns, name);
  }

  async getSecret(namespace: string, name: string): Promise<StoredSecret | undefined> {
    return this.readSecretSync(namespace, name);
  }

  /**
   * Reads a secret with one synchronous read: a small file from the page cache costs less on the
   * event loop than thread-pool round trips, and the CA's secret feed reads thousands.
   */
  private readSecretSync(namespace: string, name: string): StoredSecret | undefined {
    const file = this.secretFile(namespace, name);
    let text: string;
    try {
      text = fsSync.readFileSync(file, 'utf8');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const r = decodeSecretRecord(`file ${file}`, text);
    if (r.namespace !== namespace || r.name !== name) throw new Error(`file ${file} holds the secret ${r.namespace}/${r.name}; it was copied or moved by hand`);
    return { namespace, name, certChainPem: r.certChainPem, keyPem: this.openKey(r.keyPem), rootCertPem: r.rootCertPem, metadata: r.metadata, version: r.version ?? 0 };
  }

  private openKey(text: string): string {
    if (!isSealed(text)) return text;
    if (!this.kek) throw new UserError(`a private key in ${this.url} is sealed with a key-encryption key; pass the --kek-file it was sealed with`);
    return this.kek.open(text);
  }

  private sealKey(pem: string): string {
    return this.kek ? this.kek.seal(pem) : pem;
  }

  async listSecrets(namespace?: string): Promise<StoredSecret[]> {
    const namespaces = namespace ? [namespace] : (await readdirOrEmpty(path.join(this.dir, 'secrets'))).filter((n) => !n.startsWith('.'));
    const out: StoredSecret[] = [];
    for (const ns of namespaces) {
      const names = (await readdirOrEmpty(path.join(this.dir, 'secrets', ns))).filter((n) => !n.startsWith('.'));
      for (const name of names) {
        const s = this.readSecretSync(ns, name);
        if (s) out.push(s);
      }
    }
    return out.sort((a, b) => (a.namespace + '/' + a.name).localeCompare(b.namespace + '/' + b.name));
  }

  async putSecret(secret: Secret, expectedVersion?: number | null): Promise<number> {
    this.secretFile(secret.namespace, secret.name);
    return this.locked(`${secret.namespace}/${secret.name}`, async () => {
      const version = await this.writer.write({ secret: { ...secret, keyPem: this.sealKey(secret.keyPem) }, expectedVersion });
      this.emit({ type: 'put', namespace: secret.namespace, name: secret.name });
      return version;
    });
  }

  async deleteSecret(namespace: string, name: string, expectedVersion?: number): Promise<boolean> {
    this.secretFile(namespace, name);
    return this.locked(`${namespace}/${name}`, async () => {
      const file = this.secretFile(namespace, name);
      const current = currentVersion(file);
      if (current === undefined) {
        if (expectedVersion !== undefined) throw new ConflictError(`secret ${namespace}/${name} no longer exists`);
        return false;
      }
      checkExpected(`${namespace}/${name}`, current, expectedVersion);
      await fs.unlink(file);
      await this.sync.flush();
      this.emit({ type: 'delete', namespace, name });
      return true;
    });
  }

  async getCaSecret(): Promise<CaSecret | undefined> {
    const dir = path.join(this.dir, 'ca', 'istio-ca-secret');
    try {
      const [caCertPem, keyText] = await Promise.all([fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8'), fs.readFile(path.join(dir, 'ca-key.pem'), 'utf8')]);
      return { caCertPem, caKeyPem: this.openKey(keyText) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async createCaSecretIfAbsent(candidate: CaSecret): Promise<CaSecret> {
    const parent = path.join(this.dir, 'ca');
    const tmp = path.join(parent, `.istio-ca-secret.tmp-${uniqueSuffix()}`);
    await fs.mkdir(tmp, { mode: 0o700 });
    await writeNewFileDurable(path.join(tmp, 'ca-cert.pem'), candidate.caCertPem, 0o644);
    await writeNewFileDurable(path.join(tmp, 'ca-key.pem'), this.sealKey(candidate.caKeyPem), 0o600);
    await fsyncDir(tmp);
    try {
      // rename(2) of a directory onto an existing non-empty one fails: exactly one creator wins.
      await fs.rename(tmp, path.join(parent, 'istio-ca-secret'));
      await fsyncDir(parent);
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
    return (await this.getCaSecret())!;
  }

  /** Re-seals the CA key (for `store rekey`); the root certificate itself is never replaced here. */
  replaceCaSecret(expected: CaSecret, next: CaSecret): Promise<void> {
    return this.locked('ca/istio-ca-secret', async () => {
      const current = await this.getCaSecret();
      if (!current || current.caCertPem !== expected.caCertPem || current.caKeyPem !== expected.caKeyPem) {
        throw new ConflictError('the CA secret changed or is missing; re-read it and retry');
      }
      if (next.caCertPem !== current.caCertPem) throw new Error('the file store does not replace the CA certificate; only its key encryption');
      await writeFileAtomic(path.join(this.dir, 'ca', 'istio-ca-secret', 'ca-key.pem'), this.sealKey(next.caKeyPem), 0o600);
    });
  }

  async putJoinToken(record: JoinTokenRecord): Promise<void> {
    checkTokenHash(record.hash);
    await this.writeRecord(path.join(this.dir, 'tokens', `${record.hash}.json`), encodeRecord(record));
  }

  /** A small record file, replaced all at once (rename) and durable. */
  private async writeRecord(file: string, text: string): Promise<void> {
    const tmp = `${file}.tmp-${uniqueSuffix()}`;
    await writeNewFileDurable(tmp, text + '\n', 0o600);
    await fs.rename(tmp, file);
    await fsyncDir(path.dirname(file));
  }

  /** Every `<sub>/*.json` record, parsed. */
  private async readRecords<T>(sub: string, decode: (where: string, text: string) => T, accept: (name: string) => boolean = () => true): Promise<T[]> {
    const dir = path.join(this.dir, sub);
    const out: T[] = [];
    for (const e of await readdirOrEmpty(dir)) {
      if (e.startsWith('.') || !e.endsWith('.json') || !accept(e.slice(0, -'.json'.length))) continue;
      let text: string;
      try {
        text = fsSync.readFileSync(path.join(dir, e), 'utf8');
      } catch (err) {
        if (isNotFound(err)) continue; // consumed meanwhile
        throw err;
      }
      out.push(decode(`file ${path.join(dir, e)}`, text));
    }
    return out;
  }

  listJoinTokens(): Promise<JoinTokenRecord[]> {
    return this.readRecords('tokens', decodeJoinTokenRecord, (name) => /^[0-9a-f]{64}$/.test(name));
  }

  async putNodeRecord(record: NodeRecord): Promise<void> {
    await this.writeRecord(path.join(this.dir, 'nodes', `${hostSegment(record.host)}.json`), encodeRecord(record));
  }

  async listNodeRecords(): Promise<NodeRecord[]> {
    return (await this.readRecords('nodes', decodeNodeRecord)).sort((a, b) => a.host.localeCompare(b.host));
  }

  async putNodeEviction(eviction: NodeEviction): Promise<void> {
    await this.writeRecord(path.join(this.dir, 'evictions', `${evictionName(eviction)}.json`), encodeRecord(eviction));
    this.evictionWatch.changed();
  }

  async listNodeEvictions(): Promise<NodeEviction[]> {
    return latestEvictions(await this.readRecords('evictions', decodeNodeEviction, isEvictionName));
  }

  watchNodeEvictions(listener: (evictions: NodeEviction[]) => void): () => void {
    return this.evictionWatch.add(listener);
  }

  async consumeJoinToken(hash: string): Promise<JoinTokenRecord | undefined> {
    checkTokenHash(hash);
    const file = path.join(this.dir, 'tokens', `${hash}.json`);
    const claimed = path.join(this.dir, 'tokens', `.consumed-${hash}-${uniqueSuffix()}`);
    try {
      await fs.rename(file, claimed); // only one rename of the same file succeeds
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const text = await fs.readFile(claimed, 'utf8');
    await fs.unlink(claimed);
    return decodeJoinTokenRecord(`file ${file}`, text);
  }

  getPolicies(): Promise<StoredPolicies> {
    return this.policies.read();
  }

  putPolicies(documents: readonly CanonicalPolicy[], expectedVersion: number): Promise<number> {
    return this.policies.write(documents, expectedVersion);
  }

  watchPolicies(listener: (event: PolicyEvent) => void): () => void {
    return this.policies.watch(listener);
  }

  watch(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One process writes a directory, so it always leads. */
  async leaderElection(): Promise<LeaderElection> {
    return alwaysLeader;
  }

  unavailableReason(): string | undefined {
    return undefined;
  }

  onAvailable(): () => void {
    return () => {};
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.evictionWatch.stop();
    this.policies.close();
    await Promise.all([...this.locks.values()]);
    await this.writer.close();
    this.sync.close();
    this.lock?.release();
  }

  private emit(e: StoreEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** Serialises writers of one secret within this process. */
  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }

  /**
   * Removes what a killed writer left behind (temporary files and directories), and converts
   * secrets kept in the earlier layout (a symlink to a version directory of four files) into
   * single files, each all at once, keeping its version.
   */
  private async collectGarbage(): Promise<void> {
    const secrets = path.join(this.dir, 'secrets');
    for (const ns of await readdirOrEmpty(secrets)) {
      const nsDir = path.join(secrets, ns);
      const entries = await readdirOrEmpty(nsDir);
      for (const e of entries.filter((e) => !e.startsWith('.'))) await this.convertLegacy(nsDir, ns, e);
      // Hidden entries: a temporary file (removed unless a live writer is still at it), or an
      // earlier layout's version directory or temporary link, which no secret names now.
      for (const e of entries.filter((e) => e.startsWith('.'))) {
        if (!e.includes('.tmp-') || isLeftover(nsDir, e)) await fs.rm(path.join(nsDir, e), { recursive: true, force: true });
      }
    }
    for (const sub of ['ca', 'tokens', 'policies', 'nodes', 'evictions']) {
      const subDir = path.join(this.dir, sub);
      for (const e of await readdirOrEmpty(subDir)) {
        if (e.includes('.tmp-') && isLeftover(subDir, e)) await fs.rm(path.join(subDir, e), { recursive: true, force: true });
      }
    }
  }

  /** `<nsDir>/<name>` as a symlink to `.<name>.v<N>/` becomes one file at version N; the directory is left for the sweep. */
  private async convertLegacy(nsDir: string, ns: string, name: string): Promise<void> {
    const link = path.join(nsDir, name);
    if (!(await fs.lstat(link)).isSymbolicLink()) return;
    const target = await fs.readlink(link);
    const versionDir = path.join(nsDir, target);
    const read = (f: string) => fs.readFile(path.join(versionDir, f), 'utf8');
    let secret: Secret;
    try {
      secret = { namespace: ns, name, certChainPem: await read('cert-chain.pem'), keyPem: await read('key.pem'), rootCertPem: await read('root-cert.pem'), metadata: JSON.parse(await read('metadata.json')) as SecretMetadata };
    } catch (err) {
      throw new UserError(`cannot convert the secret ${ns}/${name} from the earlier layout (${link} -> ${target}): ${(err as Error).message}; move it aside and start again`);
    }
    const version = Number(/\.v(\d+)$/.exec(target)?.[1] ?? 0);
    const tmp = path.join(nsDir, `.${name}.tmp-${uniqueSuffix()}`);
    await writeNewFileDurable(tmp, encodeSecretRecord(secret, version), 0o600); // the key stays sealed as it was
    await fs.rename(tmp, link);
    await fsyncDir(nsDir);
  }
}

/**
 * `chattr +T` on the secrets directory, best effort. On ext2/3/4 it tells the Orlov allocator
 * that the namespaces below are unrelated hierarchies, so their directories (and the secrets in
 * them) spread over the block groups instead of crowding the parent's. Where inode allocation is
 * slow in a crowded group (an ext4 without a journal skips every inode of the group deleted in
 * the last minute), this took writing 4,000 secrets from 1.1-2.6 s to 0.5-0.8 s. Filesystems
 * without the flag (tmpfs, XFS) refuse it, and nothing changes.
 */
async function markTopDir(dir: string): Promise<void> {
  if (typeof nativeAddon?.markTopDir === 'function') {
    nativeAddon.markTopDir(dir);
    return;
  }
  await new Promise<void>((resolve) => execFile('chattr', ['+T', dir], () => resolve()));
}

/**
 * Evictions written by any process into `<dir>/evictions`: inotify (fs.watch) says when, and a
 * slow poll covers filesystems where it does not; listeners hear the full list when it changed.
 */
class EvictionWatch {
  private readonly listeners = new Set<(e: NodeEviction[]) => void>();
  private watcher: fsSync.FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private last = '';
  private current: NodeEviction[] | undefined;
  private reading: Promise<void> = Promise.resolve();
  private pending = false;

  constructor(private readonly dir: string, private readonly read: () => Promise<NodeEviction[]>) {}

  add(listener: (e: NodeEviction[]) => void): () => void {
    this.listeners.add(listener);
    if (!this.watcher) this.start();
    else this.reading.then(() => this.current && this.listeners.has(listener) && listener(this.current));
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  changed(): void {
    if (this.pending || !this.watcher) return;
    this.pending = true;
    this.reading = this.reading.then(async () => {
      this.pending = false;
      try {
        const now = await this.read();
        const text = JSON.stringify(now);
        if (text === this.last) return;
        this.last = text;
        this.current = now;
        for (const l of this.listeners) l(now);
      } catch {
        // a half-written or foreign file: the next change or poll reads again
      }
    });
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    clearInterval(this.poll);
  }

  private start(): void {
    this.watcher = fsSync.watch(this.dir, { persistent: false }, () => this.changed());
    this.watcher.on('error', () => undefined);
    this.poll = setInterval(() => this.changed(), 5000);
    this.poll.unref();
    this.last = '\0'; // the first read always reports
    this.changed();
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}
