/**
 * The file store's writer lock: an exclusive flock(2) on `<dir>/citadel.lock`, held by the one
 * process that writes the store's secrets (`citadel server`, `store rekey`, `store migrate`'s
 * target). The kernel releases it when that process ends however it ends, so a crashed holder
 * never blocks the next start; the holder writes its pid into the file so a refusal names it.
 * Readers (`store list`, `store get`) and the small atomic writes of `token create` or
 * `node evict` take no lock.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../common/errors';
import { nativeAddon } from '../common/native';

export const LOCK_FILE = 'citadel.lock';

export class WriterLock {
  private constructor(
    readonly file: string,
    private readonly release_: () => void,
  ) {}

  /** Takes the lock of the store directory `dir`, or refuses with one line naming the holder. */
  static async acquire(dir: string): Promise<WriterLock> {
    const file = path.join(dir, LOCK_FILE);
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      const release = typeof nativeAddon?.tryLock === 'function' ? lockNative(fd, file) : await lockWithFlockCommand(file);
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${process.pid}\n`, 0);
      fs.fsyncSync(fd);
      return new WriterLock(file, () => {
        release();
        fs.closeSync(fd);
      });
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Releases the lock (also released when the process ends). */
  release(): void {
    this.release_();
  }
}

function busy(file: string): UserError {
  let holder = 'unknown pid';
  try {
    const pid = fs.readFileSync(file, 'utf8').trim();
    if (/^\d+$/.test(pid)) holder = `pid ${pid}`;
  } catch {
    // the holder's pid is only for the message
  }
  return new UserError(
    `the store ${path.dirname(file)} is in use by another citadel process (${holder}, holding ${file}); stop it first: one process writes a file store (several replicas need a zk:// store)`,
  );
}

function lockNative(fd: number, file: string): () => void {
  const answer = nativeAddon!.tryLock(fd);
  if (answer === 'busy') throw busy(file);
  if (answer !== '') throw new Error(`cannot lock ${file}: ${answer}`);
  return () => {
    fs.ftruncateSync(fd, 0); // closing the descriptor releases the lock itself
  };
}

/**
 * Without the native addon: util-linux `flock -n FILE cat` holds the same flock(2) lock in a child
 * whose stdin is a pipe from us. If we die, the pipe closes, `cat` ends and the lock goes with it.
 */
function lockWithFlockCommand(file: string): Promise<() => void> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn('flock', ['-n', '-E', '75', file, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
    } catch (err) {
      return reject(err);
    }
    let out = '';
    const onExit = (code: number | null) => reject(code === 75 ? busy(file) : new Error(`cannot lock ${file}: flock exited with ${code}`));
    child.once('error', (err) => reject(new Error(`cannot lock ${file}: the native addon is not built and flock(1) cannot run (${err.message})`)));
    child.once('exit', onExit);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (!out.includes('locked')) return;
      child.off('exit', onExit);
      child.unref();
      (child.stdout as unknown as { unref?: () => void }).unref?.();
      (child.stdin as unknown as { unref?: () => void }).unref?.();
      resolve(() => {
        child.stdin!.end();
        child.kill();
      });
    });
  });
}
