import { constants, promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

/** Citadel's three files in each identity directory. */
export const BUNDLE_FILES = ['cert-chain.pem', 'key.pem', 'root-cert.pem'] as const;
export type BundleFile = (typeof BUNDLE_FILES)[number];
export type Bundle = Record<BundleFile, string>;

const DATA = '..data';
const MODES: Record<BundleFile, number> = { 'cert-chain.pem': 0o644, 'key.pem': 0o600, 'root-cert.pem': 0o644 };

export interface IdentityDir {
  namespace: string;
  serviceAccount: string;
}

/**
 * `<certs-dir>/<ns>/<sa>/{cert-chain.pem,key.pem,root-cert.pem}`, the directories sidecars mount
 * at /etc/certs, written the way the kubelet's AtomicWriter writes secret volumes: each version's
 * files go into a fresh hidden directory `..<version>` (each file fsynced), `..data` is a symlink
 * to it swapped by rename(2), and the visible files are symlinks through `..data`. A new identity
 * directory is assembled under a hidden name and renamed into place; a removed one is renamed
 * away before it is deleted. A reader, or an agent killed at any moment, sees a whole old bundle
 * or a whole new one, never a mix; `repair()` clears what a killed writer left behind.
 */
export class CertsDirectory {
  private readonly namespaces = new Set<string>();

  constructor(readonly root: string, private readonly durable = true) {}

  identityPath(namespace: string, serviceAccount: string): string {
    for (const [what, s] of [['namespace', namespace], ['service account', serviceAccount]] as const) {
      if (!s || s.startsWith('.') || s.includes('/') || s.includes('\0')) throw new Error(`invalid ${what} "${s}"`);
    }
    return path.join(this.root, namespace, serviceAccount);
  }

  /** The identity directories present (visible names only). */
  async list(): Promise<IdentityDir[]> {
    const out: IdentityDir[] = [];
    for (const ns of await visible(this.root)) {
      const st = await fs.lstat(path.join(this.root, ns)).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      for (const sa of await visible(path.join(this.root, ns))) out.push({ namespace: ns, serviceAccount: sa });
    }
    return out;
  }

  /** The bundle as a reader sees it, or undefined. */
  async read(namespace: string, serviceAccount: string): Promise<Bundle | undefined> {
    const dir = this.identityPath(namespace, serviceAccount);
    try {
      const [a, b, c] = await Promise.all(BUNDLE_FILES.map((f) => fs.readFile(path.join(dir, f), 'utf8')));
      return { 'cert-chain.pem': a, 'key.pem': b, 'root-cert.pem': c };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Replaces the identity's three files at once. `isNew`: the caller believes the directory does not exist yet. */
  async write(namespace: string, serviceAccount: string, bundle: Bundle, isNew?: boolean): Promise<void> {
    const dir = this.identityPath(namespace, serviceAccount);
    const nsDir = path.dirname(dir);
    if (!this.namespaces.has(nsDir)) {
      await fs.mkdir(nsDir, { recursive: true, mode: 0o755 });
      this.namespaces.add(nsDir);
    }
    const version = `..${new Date().toISOString().replace(/[-:]/g, '').replace('.', '_')}.${randomBytes(4).toString('hex')}`;
    if (isNew ?? !(await exists(dir))) {
      const tmp = path.join(nsDir, `.${serviceAccount}.tmp-${randomBytes(6).toString('hex')}`);
      await fs.mkdir(tmp, { mode: 0o755 });
      await this.writePayload(path.join(tmp, version), bundle);
      await fs.symlink(version, path.join(tmp, DATA));
      for (const f of BUNDLE_FILES) await fs.symlink(path.join(DATA, f), path.join(tmp, f));
      await this.sync(tmp);
      try {
        await fs.rename(tmp, dir); // fails if another writer created it meanwhile: then update it below
        await this.sync(nsDir);
        return;
      } catch (err) {
        await fs.rm(tmp, { recursive: true, force: true });
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      }
    }
    const old = await fs.readlink(path.join(dir, DATA)).catch(() => undefined);
    await this.writePayload(path.join(dir, version), bundle);
    const tmpLink = path.join(dir, `${DATA}_tmp`);
    await fs.rm(tmpLink, { force: true });
    await fs.symlink(version, tmpLink);
    await fs.rename(tmpLink, path.join(dir, DATA));
    for (const f of BUNDLE_FILES) {
      if (!(await fs.lstat(path.join(dir, f)).catch(() => undefined))) await fs.symlink(path.join(DATA, f), path.join(dir, f));
    }
    await this.sync(dir);
    if (old && old !== version) await fs.rm(path.join(dir, old), { recursive: true, force: true });
  }

  /** Removes an identity directory: renamed out of sight first, then deleted. */
  async remove(namespace: string, serviceAccount: string): Promise<void> {
    const dir = this.identityPath(namespace, serviceAccount);
    const gone = path.join(path.dirname(dir), `.${serviceAccount}.removing-${randomBytes(6).toString('hex')}`);
    try {
      await fs.rename(dir, gone);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await fs.rm(gone, { recursive: true, force: true });
    if (await fs.rmdir(path.dirname(dir)).then(() => true, () => false)) this.namespaces.delete(path.dirname(dir)); // the namespace directory, once empty
  }

  /** Clears what a killed writer left: temporary and removed directories, stale versions, dangling links. */
  async repair(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true, mode: 0o755 });
    for (const ns of await visible(this.root)) {
      const nsDir = path.join(this.root, ns);
      if (!(await fs.lstat(nsDir)).isDirectory()) continue;
      for (const e of await fs.readdir(nsDir)) {
        const p = path.join(nsDir, e);
        if (e.startsWith('.')) {
          if (e.includes('.tmp-') || e.includes('.removing-')) await fs.rm(p, { recursive: true, force: true });
          continue;
        }
        const current = await fs.readlink(path.join(p, DATA)).catch(() => undefined);
        const payloadOk = current !== undefined && (await exists(path.join(p, current)));
        if (!payloadOk) {
          await fs.rm(p, { recursive: true, force: true }); // cannot happen by construction; never leave it half there
          continue;
        }
        for (const inner of await fs.readdir(p)) {
          if (inner.startsWith('..') && inner !== DATA && inner !== current) await fs.rm(path.join(p, inner), { recursive: true, force: true });
        }
        for (const f of BUNDLE_FILES) {
          if (!(await fs.lstat(path.join(p, f)).catch(() => undefined))) await fs.symlink(path.join(DATA, f), path.join(p, f));
        }
      }
      await fs.rmdir(nsDir).catch(() => undefined);
    }
  }

  private async writePayload(dir: string, bundle: Bundle): Promise<void> {
    await fs.mkdir(dir, { mode: 0o755 });
    await Promise.all(BUNDLE_FILES.map((f) => this.writeFile(path.join(dir, f), bundle[f], MODES[f])));
    await this.sync(dir);
  }

  private async writeFile(file: string, data: string, mode: number): Promise<void> {
    const fh = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    try {
      await fh.writeFile(data, 'utf8');
      if (this.durable) await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  private async sync(dir: string): Promise<void> {
    if (!this.durable) return;
    const fh = await fs.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

async function visible(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).filter((n) => !n.startsWith('.'));
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

async function exists(p: string): Promise<boolean> {
  return (await fs.lstat(p).catch(() => undefined)) !== undefined;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}
