import { constants, promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import * as fsSync from 'node:fs';
import { nativeAddon } from './native';

const PROCESS_TAG = randomBytes(4).toString('hex');
let tempCounter = 0;

/**
 * A suffix for temporary names that no other writer uses: the process id, a random tag per
 * process and a counter. (randomBytes per name cost more than the syscalls around it on the
 * store's write path.) The process id lets a cleanup tell a dead writer's leftovers from a live
 * writer's work in progress (see isLeftover).
 */
export function uniqueSuffix(): string {
  return `${process.pid}.${PROCESS_TAG}${(++tempCounter).toString(36)}`;
}

/** No write keeps a temporary file this long; older ones are leftovers whoever made them. */
const LEFTOVER_AGE_MS = 10 * 60_000;

/**
 * Whether the temporary entry `name` (made with uniqueSuffix) in `dir` is a leftover to remove:
 * its process is gone, or it is older than any write takes. A live process's entries are its
 * writes in progress (a CLI opening the store of a running server must not remove them).
 */
export function isLeftover(dir: string, name: string, now = Date.now()): boolean {
  const pid = Number(/-(\d+)\.[0-9a-f]{8}[0-9a-z]+$/.exec(name)?.[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || !processAlive(pid)) return true;
  try {
    return now - fsSync.lstatSync(path.join(dir, name)).mtimeMs > LEFTOVER_AGE_MS;
  } catch {
    return false; // already gone
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates `file` (which must not exist), writes it and fsyncs it. */
export async function writeNewFileDurable(file: string, data: string | Buffer, mode: number): Promise<void> {
  const fh = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces `file` all at once: a fsynced temp file renamed over it, then the directory fsynced. */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${uniqueSuffix()}`);
  try {
    await writeNewFileDurable(tmp, data, mode);
    await fs.chmod(tmp, mode);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Group commit for many small files on one filesystem: each caller writes without fsync, then
 * awaits flush(), which makes everything written before the call durable. Concurrent callers
 * share one syncfs(2) (the native addon's, else `sync -f`) instead of paying an fsync per file
 * and per directory: this is what lets a reconcile write thousands of secrets in seconds.
 */
export class FilesystemSync {
  private running?: Promise<void>;
  private queued?: Promise<void>;
  private syncfsWorks = true;
  /** An open descriptor on the filesystem to sync (kept for the life of the process). */
  private dirFd?: number;

  constructor(private readonly dir: string) {}

  flush(): Promise<void> {
    if (!this.running) {
      // Start on the next turn of the event loop, so every writer of this turn shares the sync
      // and the sync does not contend with their file creation on the journal.
      this.running = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => this.syncOnce())
        .finally(() => (this.running = undefined));
      return this.running;
    }
    // A sync already under way may have started before our writes: wait for the next one.
    if (!this.queued) {
      this.queued = this.running.then(() => {
        this.queued = undefined;
        return this.flush();
      });
    }
    return this.queued;
  }

  /** Releases the descriptor; a later flush opens it again. */
  close(): void {
    if (this.dirFd !== undefined) fsSync.closeSync(this.dirFd);
    this.dirFd = undefined;
  }

  private async syncOnce(): Promise<void> {
    if (nativeAddon) {
      this.dirFd ??= fsSync.openSync(this.dir, 'r');
      return nativeAddon.syncfs(this.dirFd);
    }
    if (this.syncfsWorks) {
      try {
        await execFileAsync('sync', ['-f', this.dir]);
        return;
      } catch {
        this.syncfsWorks = false; // no coreutils sync -f here: fall back to a global sync
      }
    }
    await execFileAsync('sync', []);
  }
}

function execFileAsync(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => execFile(cmd, args, (err) => (err ? reject(err) : resolve())));
}

