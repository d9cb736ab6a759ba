/**
 * The file store's policy set: `<dir>/policies/<version>.json`, the highest version being the
 * set. Writes are a compare-and-set between processes too (`citadel policy apply` runs beside
 * the server): the new set goes to a temporary file, made durable, then is linked to the next
 * version's name. link(2) refuses a name that exists, so of two writers of one version exactly
 * one wins, and a reader sees a whole set, never part of one. Older versions are removed after.
 *
 * Other processes' changes are seen through fs.watch (inotify) on the directory, and, where that
 * says nothing (network filesystems, inotify limits), by listing the directory every second.
 */
import * as fsSync from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, uniqueSuffix, writeNewFileDurable } from '../common/atomic-file';
import { ConflictError, errorMessage } from '../common/errors';
import type { CanonicalPolicy } from '../mesh/policy';
import { decodePolicySet, encodePolicySet } from './policy-set';
import type { PolicyEvent, StoredPolicies } from './store';

const VERSION_FILE = /^([1-9]\d*)\.json$/;
/** How often other processes' writes are looked for when fs.watch is silent. */
const POLL_MS = 1000;
/** Reads retried when the version listed was removed by a newer write before it was read. */
const READ_ATTEMPTS = 10;

export class PolicyFiles {
  private readonly listeners = new Set<(e: PolicyEvent) => void>();
  private watcher?: fsSync.FSWatcher;
  private poll?: NodeJS.Timeout;
  /** The newest version listeners were told of. */
  private seen = 0;
  private checking = false;
  private checkAgain = false;

  constructor(readonly dir: string) {}

  async read(): Promise<StoredPolicies> {
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const version = currentVersion(await fs.readdir(this.dir));
      if (version === 0) return { documents: [], version };
      const file = this.file(version);
      let data: Buffer;
      try {
        data = await fs.readFile(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // replaced by a newer version since the listing
        throw err;
      }
      return { documents: decodePolicySet(`file ${file}`, data), version };
    }
    throw new ConflictError(`the policy set in ${this.dir} kept changing while it was read; retry`);
  }

  async write(documents: readonly CanonicalPolicy[], expectedVersion: number): Promise<number> {
    checkVersion(expectedVersion);
    const data = encodePolicySet(documents);
    const current = currentVersion(await fs.readdir(this.dir));
    if (current !== expectedVersion) throw conflict(current, expectedVersion);
    const next = expectedVersion + 1;
    const tmp = path.join(this.dir, `.${next}.json.tmp-${uniqueSuffix()}`);
    try {
      await writeNewFileDurable(tmp, data, 0o644);
      await fs.link(tmp, this.file(next));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw conflict(next, expectedVersion);
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
    await fsyncDir(this.dir);
    // The name was free because a newer write had already removed it: that write built on
    // another set, and ours must not count. Retracted, it is never the highest, so no one read it.
    const after = await fs.readdir(this.dir);
    const newest = currentVersion(after);
    if (newest !== next) {
      await fs.rm(this.file(next), { force: true });
      throw conflict(newest, expectedVersion);
    }
    for (const name of after) {
      const v = versionOf(name);
      if (v !== undefined && v < next) await fs.rm(path.join(this.dir, name), { force: true });
    }
    this.tell(next);
    return next;
  }

  watch(listener: (e: PolicyEvent) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  close(): void {
    this.listeners.clear();
    this.stop();
  }

  private file(version: number): string {
    return path.join(this.dir, `${version}.json`);
  }

  private start(): void {
    // Read synchronously, so that any read the subscriber makes next is at or after this version.
    this.seen = currentVersion(fsSync.readdirSync(this.dir));
    try {
      this.watcher = fsSync.watch(this.dir, { persistent: false }, (_event, name) => {
        if (name === null || !String(name).startsWith('.')) this.check();
      });
      this.watcher.on('error', () => this.watcher?.close()); // the poll still sees changes
    } catch {
      // no inotify here (or out of watches): the poll alone
    }
    this.poll = setInterval(() => this.check(), POLL_MS);
    this.poll.unref();
  }

  private stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    clearInterval(this.poll);
    this.poll = undefined;
  }

  /** Lists the directory and tells listeners of a newer version; one listing at a time. */
  private check(): void {
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.checking = true;
    fs.readdir(this.dir)
      .then((names) => this.tell(currentVersion(names)))
      .catch(() => undefined) // the directory is gone or unreadable: the next poll tries again, and reads report it
      .finally(() => {
        this.checking = false;
        if (this.checkAgain && this.listeners.size > 0) {
          this.checkAgain = false;
          this.check();
        }
      });
  }

  /** Versions only grow; a listing older than a write just told of says nothing new. */
  private tell(version: number): void {
    if (version <= this.seen) return;
    this.seen = version;
    const event: PolicyEvent = { type: 'policies', version };
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        // A listener's bug must not fail the write that told it (the set is stored by now).
        process.emitWarning(`citadel: a policy watch listener threw: ${errorMessage(err)}`);
      }
    }
  }
}

function versionOf(name: string): number | undefined {
  const m = VERSION_FILE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** The highest version file's number, 0 when there is none. */
function currentVersion(names: readonly string[]): number {
  let max = 0;
  for (const name of names) max = Math.max(max, versionOf(name) ?? 0);
  return max;
}

function checkVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 0) throw new Error(`a policy set version is a whole number from 0, not ${version}`);
}

function conflict(current: number, expected: number): ConflictError {
  return new ConflictError(`the policy set changed: it is at version ${current}, not ${expected}; re-read it and retry`);
}
