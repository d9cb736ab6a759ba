import * as fsSync from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { nativeAddon } from '../common/native';
import { FilesystemSync, fsyncDir, isLeftover, uniqueSuffix, writeFileAtomic, writeNewFileDurable } from '../common/atomic-file';
import { ConflictError, UserError } from '../common/errors';
import { decodeSecretRecord, encodeSecretRecord } from './secret-record';
import { checkExpected, currentVersion, SecretWriter } from './secret-writer';
import { checkSecretRef } from '../pki/identity';
import type { CanonicalPolicy } from '../mesh/policy';
import { PolicyFiles } from './policy-files';
import { alwaysLeader, CaSecret, isSealed, JoinTokenRecord, Kek, LeaderElection, PolicyEvent, Secret, SecretMetadata, Store, StoredPolicies, StoredSecret, StoreEvent, StoreOptions } from './store';

/**
 * The embedded default store: a directory on local disk,
 *
 *   <dir>/secrets/<namespace>/istio.<sa>        one secret: JSON of its three PEMs, metadata and version
 *   <dir>/ca/istio-ca-secret/{ca-cert.pem,ca-key.pem}
 *   <dir>/tokens/<sha256>.json
 *   <dir>/policies/<version>.json             the policy set (policy-files.ts: compare-and-set across processes)
 *
 * A secret is one file, the same document the ZooKeeper store keeps in a znode
 * (secret-record.ts), so a secret costs one inode. It is written all or nothing: a temporary file
 * `.istio.<sa>.tmp-*`, made durable by a shared syncfs, is renamed over the secret's name, and a
 * second shared syncfs makes the rename durable before the writer hears of it. A reader or a
 * writer killed at any moment sees the old secret or the new one, never a mix; temporary files
 * are removed on the next open. One process writes a store directory at a time. The writes run
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
  private readonly policies: PolicyFiles;

  private constructor(readonly dir: string, opts: StoreOptions) {
    this.url = `file:${dir}`;
    this.sync = new FilesystemSync(dir);
    this.writer = new SecretWriter(dir);
    this.policies = new PolicyFiles(path.join(dir, 'policies'));
    this.kek = opts.kek;
  }

  static async open(dir: string, opts: StoreOptions = {}): Promise<FileStore> {
    const abs = path.resolve(dir);
    for (const sub of ['secrets', 'ca', 'tokens', 'policies']) await fs.mkdir(path.join(abs, sub), { recursive: true, mode: 0o700 });
    await markTopDir(path.join(abs, 'secrets'));
    const store = new FileStore(abs, opts);
    await store.collectGarbage();
    return store;
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
    checkSegment(record.hash, 'token hash');
    const file = path.join(this.dir, 'tokens', `${record.hash}.json`);
    const tmp = `${file}.tmp-${uniqueSuffix()}`;
    await writeNewFileDurable(tmp, JSON.stringify(record) + '\n', 0o600);
    await fs.rename(tmp, file);
    await fsyncDir(path.dirname(file));
  }

  async consumeJoinToken(hash: string): Promise<JoinTokenRecord | undefined> {
    checkSegment(hash, 'token hash');
    const file = path.join(this.dir, 'tokens', `${hash}.json`);
    const claimed = path.join(this.dir, 'tokens', `.consumed-${hash}-${uniqueSuffix()}`);
    try {
      await fs.rename(file, claimed); // only one rename of the same file succeeds
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const record = JSON.parse(await fs.readFile(claimed, 'utf8')) as JoinTokenRecord;
    await fs.unlink(claimed);
    return record;
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
    this.policies.close();
    await Promise.all([...this.locks.values()]);
    await this.writer.close();
    this.sync.close();
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
    for (const sub of ['ca', 'tokens', 'policies']) {
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

function checkSegment(s: string, what: string): void {
  if (!s || s.startsWith('.') || s.includes('/') || s.includes('\0')) throw new Error(`invalid ${what} "${s}"`);
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
