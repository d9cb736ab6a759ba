import * as fsSync from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FilesystemSync, fsyncDir, uniqueSuffix, writeFileAtomic, writeNewFileDurable } from '../common/atomic-file';
import { ConflictError, UserError } from '../common/errors';
import { checkExpected, readLinkIfExists, SecretWriter } from './secret-writer';
import { CaSecret, isSealed, JoinTokenRecord, Kek, Secret, SecretMetadata, Store, StoredSecret, StoreEvent, StoreOptions } from './store';

/**
 * The embedded default store: a directory on local disk laid out like Citadel's secrets,
 *
 *   <dir>/secrets/<namespace>/istio.<sa>/{cert-chain.pem,key.pem,root-cert.pem,metadata.json}
 *   <dir>/ca/istio-ca-secret/{ca-cert.pem,ca-key.pem}
 *   <dir>/tokens/<sha256>.json
 *
 * A secret is written all or nothing, the way the kubelet's AtomicWriter does it: the files go
 * into a new hidden version directory `.istio.<sa>.v<N>` (made durable by a shared syncfs before
 * any link names it), and the name `istio.<sa>` is a symlink, made in place for a new secret and
 * swapped by rename(2) for a new version. A reader or a writer killed at any moment sees the old
 * secret or the new one, never a mix; a version no link names is removed on the next open. One
 * process writes a store directory at a time. The writes run in batches on writer threads
 * (secret-writer.ts), so that a reconcile's signing overlaps its disk work; reads are a few
 * synchronous syscalls on the caller's thread.
 */
export class FileStore implements Store {
  readonly url: string;
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly kek?: Kek;
  private readonly sync: FilesystemSync;
  /** Secret writes, batched on a worker thread. */
  private readonly writer: SecretWriter;

  private constructor(readonly dir: string, opts: StoreOptions) {
    this.url = `file:${dir}`;
    this.sync = new FilesystemSync(dir);
    this.writer = new SecretWriter(dir);
    this.kek = opts.kek;
  }

  static async open(dir: string, opts: StoreOptions = {}): Promise<FileStore> {
    const abs = path.resolve(dir);
    for (const sub of ['secrets', 'ca', 'tokens']) await fs.mkdir(path.join(abs, sub), { recursive: true, mode: 0o700 });
    const store = new FileStore(abs, opts);
    await store.collectGarbage();
    return store;
  }

  private secretLink(ns: string, name: string): string {
    checkSegment(ns, 'namespace');
    checkSegment(name, 'secret name');
    return path.join(this.dir, 'secrets', ns, name);
  }

  async getSecret(namespace: string, name: string): Promise<StoredSecret | undefined> {
    return this.readSecretSync(namespace, name);
  }

  /**
   * Reads a secret with synchronous syscalls: five small files from the page cache cost less on
   * the event loop than twenty thread-pool round trips, and the CA's secret feed reads thousands.
   */
  private readSecretSync(namespace: string, name: string): StoredSecret | undefined {
    const link = this.secretLink(namespace, name);
    // A concurrent writer may remove the version we resolved; read again through the new link.
    for (let attempt = 0; ; attempt++) {
      const target = readLinkIfExists(link);
      if (target === undefined) return undefined;
      try {
        return this.readVersion(namespace, name, path.join(path.dirname(link), target));
      } catch (err) {
        if (!isNotFound(err) || attempt >= 3) throw err;
      }
    }
  }

  private readVersion(namespace: string, name: string, dir: string): StoredSecret {
    const read = (f: string) => fsSync.readFileSync(path.join(dir, f), 'utf8');
    const certChainPem = read('cert-chain.pem');
    const keyText = read('key.pem');
    const rootCertPem = read('root-cert.pem');
    const meta = read('metadata.json');
    const version = Number(/\.v(\d+)$/.exec(dir)?.[1] ?? 0);
    return { namespace, name, certChainPem, keyPem: this.openKey(keyText), rootCertPem, metadata: JSON.parse(meta) as SecretMetadata, version };
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

  putSecret(secret: Secret, expectedVersion?: number | null): Promise<number> {
    checkSegment(secret.namespace, 'namespace');
    checkSegment(secret.name, 'secret name');
    return this.locked(`${secret.namespace}/${secret.name}`, async () => {
      const version = await this.writer.write({
        namespace: secret.namespace,
        name: secret.name,
        certChainPem: secret.certChainPem,
        keyText: this.sealKey(secret.keyPem),
        rootCertPem: secret.rootCertPem,
        metadataJson: JSON.stringify(secret.metadata, null, 2) + '\n',
        expectedVersion,
      });
      this.emit({ type: 'put', namespace: secret.namespace, name: secret.name });
      return version;
    });
  }

  deleteSecret(namespace: string, name: string, expectedVersion?: number): Promise<boolean> {
    return this.locked(`${namespace}/${name}`, async () => {
      const link = this.secretLink(namespace, name);
      const current = await readLinkOrUndefined(link);
      if (current === undefined) {
        if (expectedVersion !== undefined) throw new ConflictError(`secret ${namespace}/${name} no longer exists`);
        return false;
      }
      checkExpected(`${namespace}/${name}`, Number(/\.v(\d+)$/.exec(current)?.[1] ?? 0), expectedVersion);
      await fs.unlink(link);
      await this.sync.flush();
      await fs.rm(path.join(path.dirname(link), current), { recursive: true, force: true });
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

  watch(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
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

  /** Removes what a killed writer left behind: temp directories and versions no link points at. */
  private async collectGarbage(): Promise<void> {
    const secrets = path.join(this.dir, 'secrets');
    for (const ns of await readdirOrEmpty(secrets)) {
      const nsDir = path.join(secrets, ns);
      const entries = await readdirOrEmpty(nsDir);
      const live = new Set<string>();
      for (const e of entries.filter((e) => !e.startsWith('.'))) {
        const t = await readLinkOrUndefined(path.join(nsDir, e));
        if (t) live.add(t);
      }
      for (const e of entries.filter((e) => e.startsWith('.') && !live.has(e))) await fs.rm(path.join(nsDir, e), { recursive: true, force: true });
    }
    for (const sub of ['ca', 'tokens']) {
      for (const e of await readdirOrEmpty(path.join(this.dir, sub))) {
        if (e.includes('.tmp-')) await fs.rm(path.join(this.dir, sub, e), { recursive: true, force: true });
      }
    }
  }
}

function checkSegment(s: string, what: string): void {
  if (!s || s.startsWith('.') || s.includes('/') || s.includes('\0')) throw new Error(`invalid ${what} "${s}"`);
}

async function readLinkOrUndefined(link: string): Promise<string | undefined> {
  try {
    return await fs.readlink(link);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
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

