import * as fs from 'node:fs';
import { constants } from 'node:fs';
import * as path from 'node:path';
import { uniqueSuffix } from '../common/atomic-file';
import { ENVOY_SDS_FILES } from '../mesh/bootstrap/contract';
import { envoySdsFiles, type EnvoySdsFile } from '../mesh/bootstrap/sds-files';
import { AccountRef, checkAccount, CITADEL_FILES } from '../pki/identity';

/** Citadel's three files in each identity directory. */
export const BUNDLE_FILES = [CITADEL_FILES.certChain, CITADEL_FILES.key, CITADEL_FILES.root] as const;
export type BundleFile = (typeof BUNDLE_FILES)[number];
export type Bundle = Record<BundleFile, string>;

/** Every file of a version: Citadel's three, and the same as Envoy SDS files (a files-mode bootstrap's xDS connection reads those). */
const PAYLOAD_FILES = [...BUNDLE_FILES, ENVOY_SDS_FILES.cert, ENVOY_SDS_FILES.root] as const;
type PayloadFile = BundleFile | EnvoySdsFile;

const DATA = '..data';
const MODES: Record<PayloadFile, number> = {
  'cert-chain.pem': 0o644,
  'key.pem': 0o600,
  'root-cert.pem': 0o644,
  [ENVOY_SDS_FILES.cert]: 0o600, // it holds the key too
  [ENVOY_SDS_FILES.root]: 0o644,
};

/**
 * `<certs-dir>/<ns>/<sa>/{cert-chain.pem,key.pem,root-cert.pem}` (and the same as Envoy SDS
 * files, `envoy-sds-cert.json` and `envoy-sds-root.json`), the directories sidecars mount at
 * /etc/certs, written the way the kubelet's AtomicWriter writes secret volumes: each version's
 * files go into a fresh hidden directory `..<version>` (each file fsynced), `..data` is a symlink
 * to it swapped by rename(2), and the visible files are symlinks through `..data`. A new identity
 * directory is assembled under a hidden name and renamed into place; a removed one is renamed
 * away before it is deleted. A reader, or an agent killed at any moment, sees a whole old bundle
 * or a whole new one, never a mix; `repair()` clears what a killed writer left behind.
 *
 * The calls are synchronous on purpose: an identity is some twenty small file-system calls, and
 * making each a thread-pool round trip costs more CPU than the calls themselves; the agent has
 * nothing else to do meanwhile.
 */
export class CertsDirectory {
  private readonly namespaces = new Set<string>();

  constructor(readonly root: string, private readonly durable = true) {}

  /** `<root>/<ns>/<sa>`; the names are checked as the stores check them, so no path can escape the root. */
  identityPath(a: AccountRef): string {
    const problem = checkAccount(a);
    if (problem) throw new Error(problem);
    return path.join(this.root, a.namespace, a.serviceAccount);
  }

  /** The identity directories present (visible names only). */
  async list(): Promise<AccountRef[]> {
    const out: AccountRef[] = [];
    for (const ns of visible(this.root)) {
      if (!lstat(path.join(this.root, ns))?.isDirectory()) continue;
      for (const sa of visible(path.join(this.root, ns))) out.push({ namespace: ns, serviceAccount: sa });
    }
    return out;
  }

  /** The bundle as a reader sees it, or undefined (also when a file of the current layout is missing: an older agent's directory). */
  async read(a: AccountRef): Promise<Bundle | undefined> {
    const dir = this.identityPath(a);
    if (!PAYLOAD_FILES.every((f) => fs.existsSync(path.join(dir, f)))) return undefined;
    try {
      const [a, b, c] = BUNDLE_FILES.map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
      return { 'cert-chain.pem': a, 'key.pem': b, 'root-cert.pem': c };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Replaces the identity's three files at once. `isNew`: the caller believes the directory does not exist yet. */
  async write(a: AccountRef, bundle: Bundle, isNew?: boolean): Promise<void> {
    const dir = this.identityPath(a);
    const nsDir = path.dirname(dir);
    if (!this.namespaces.has(nsDir)) {
      fs.mkdirSync(nsDir, { recursive: true, mode: 0o755 });
      this.namespaces.add(nsDir);
    }
    const version = `..${new Date().toISOString().replace(/[-:]/g, '').replace('.', '_')}.${uniqueSuffix()}`;
    if (isNew ?? !lstat(dir)) {
      const tmp = path.join(nsDir, `.${a.serviceAccount}.tmp-${uniqueSuffix()}`);
      fs.mkdirSync(tmp, { mode: 0o755 });
      this.writePayload(path.join(tmp, version), bundle);
      fs.symlinkSync(version, path.join(tmp, DATA));
      for (const f of PAYLOAD_FILES) fs.symlinkSync(path.join(DATA, f), path.join(tmp, f));
      this.sync(tmp);
      try {
        fs.renameSync(tmp, dir); // fails if the directory exists after all: then update it below
        this.sync(nsDir);
        return;
      } catch (err) {
        fs.rmSync(tmp, { recursive: true, force: true });
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      }
    }
    const old = readlink(path.join(dir, DATA));
    this.writePayload(path.join(dir, version), bundle);
    const tmpLink = path.join(dir, `${DATA}_tmp`);
    fs.rmSync(tmpLink, { force: true });
    fs.symlinkSync(version, tmpLink);
    fs.renameSync(tmpLink, path.join(dir, DATA));
    for (const f of PAYLOAD_FILES) if (!lstat(path.join(dir, f))) fs.symlinkSync(path.join(DATA, f), path.join(dir, f));
    this.sync(dir);
    if (old && old !== version) fs.rmSync(path.join(dir, old), { recursive: true, force: true });
  }

  /** Removes an identity directory: renamed out of sight first, then deleted. */
  async remove(a: AccountRef): Promise<void> {
    const dir = this.identityPath(a);
    const gone = path.join(path.dirname(dir), `.${a.serviceAccount}.removing-${uniqueSuffix()}`);
    try {
      fs.renameSync(dir, gone);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    fs.rmSync(gone, { recursive: true, force: true });
    try {
      fs.rmdirSync(path.dirname(dir)); // the namespace directory, once empty
      this.namespaces.delete(path.dirname(dir));
    } catch {
      // not empty
    }
  }

  /** Clears what a killed writer left: temporary and removed directories, stale versions, dangling links. */
  async repair(): Promise<void> {
    fs.mkdirSync(this.root, { recursive: true, mode: 0o755 });
    for (const ns of visible(this.root)) {
      const nsDir = path.join(this.root, ns);
      if (!lstat(nsDir)?.isDirectory()) continue;
      for (const e of fs.readdirSync(nsDir)) {
        const p = path.join(nsDir, e);
        if (e.startsWith('.')) {
          if (e.includes('.tmp-') || e.includes('.removing-')) fs.rmSync(p, { recursive: true, force: true });
          continue;
        }
        const current = readlink(path.join(p, DATA));
        if (current === undefined || !lstat(path.join(p, current))) {
          fs.rmSync(p, { recursive: true, force: true }); // cannot happen by construction; never leave it half there
          continue;
        }
        for (const inner of fs.readdirSync(p)) {
          if (inner.startsWith('..') && inner !== DATA && inner !== current) fs.rmSync(path.join(p, inner), { recursive: true, force: true });
        }
        for (const f of PAYLOAD_FILES) if (!lstat(path.join(p, f)) && lstat(path.join(p, current, f))) fs.symlinkSync(path.join(DATA, f), path.join(p, f));
      }
      try {
        fs.rmdirSync(nsDir);
      } catch {
        // not empty
      }
    }
  }

  private writePayload(dir: string, bundle: Bundle): void {
    fs.mkdirSync(dir, { mode: 0o755 });
    const payload: Record<PayloadFile, string> = {
      ...bundle,
      ...envoySdsFiles({ certChainPem: bundle['cert-chain.pem'], keyPem: bundle['key.pem'], rootCertPem: bundle['root-cert.pem'] }),
    };
    for (const f of PAYLOAD_FILES) {
      const fd = fs.openSync(path.join(dir, f), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, MODES[f]);
      try {
        fs.writeFileSync(fd, payload[f], 'utf8');
        if (this.durable) fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    this.sync(dir);
  }

  private sync(dir: string): void {
    if (!this.durable) return;
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

function visible(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => !n.startsWith('.'));
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

function lstat(p: string): fs.Stats | undefined {
  return fs.lstatSync(p, { throwIfNoEntry: false });
}

function readlink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}
