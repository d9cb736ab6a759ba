/**
 * The file store's secret writes, on worker threads of their own.
 *
 * A secret is one file (see file-store.ts). Creating an inode is the cost of a write, and on some
 * filesystems it is a large one: on this machine's ext4, which has no journal, each allocation
 * scans past every inode of its group deleted in the last minute, and costs from 25 µs to over
 * 1 ms (bench/reconcile.js prints it). An initial reconcile writes thousands of secrets while the
 * main thread makes their keys and certificates. Here the two overlap: the main thread hands each
 * write over and goes on signing; a worker takes every write that has arrived since its last
 * batch, writes each to a temporary file, makes them durable with one shared syncfs, renames each
 * over its secret's name, syncs once more, and only then answers each of them.
 *
 * The protocol for one write is the same as writing in-thread: the new file durable before its
 * name can point at it, the rename durable before the caller hears of it, and a compare-and-set
 * on the version written in the file. The caller (FileStore) holds a per-secret lock, so no two
 * writes of one secret are ever in flight. If no worker can start, the same batches run on the
 * calling thread.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { FilesystemSync, uniqueSuffix } from '../common/atomic-file';
import { ConflictError } from '../common/errors';
import { decodeSecretRecord, encodeSecretRecord } from './secret-record';
import type { Secret } from './store';

/** One write of `<dir>/secrets/<namespace>/<name>`. */
export interface SecretWrite {
  /** The secret, its private key already sealed when the store seals keys. */
  secret: Secret;
  /** null: the secret must not exist; a number: it must be at that version; undefined: no check. */
  expectedVersion?: number | null;
}

type Outcome = { ok: true; version: number } | { ok: false; conflict: boolean; message: string; code?: string };

interface Request {
  id: number;
  write: SecretWrite;
}

interface Reply {
  id: number;
  outcome: Outcome;
}

/** Writes batches of secrets under one store directory; used by the worker, or in-thread as the fallback. */
class BatchWriter {
  private readonly sync: FilesystemSync;
  /** Namespace directories known to exist, so a write does not mkdir them again. */
  private readonly knownDirs = new Set<string>();

  constructor(private readonly dir: string) {
    this.sync = new FilesystemSync(dir);
  }

  async writeBatch(writes: SecretWrite[]): Promise<Outcome[]> {
    const outcomes: Outcome[] = new Array(writes.length);
    const prepared: Array<{ i: number; file: string; tmp: string; version: number }> = [];
    // 1. Every write into a temporary file of its own, which no reader looks at.
    writes.forEach((w, i) => {
      try {
        prepared.push({ i, ...this.prepare(w) });
      } catch (err) {
        outcomes[i] = failure(err);
      }
    });
    if (prepared.length === 0) return outcomes;
    // 2. Durable before any name can point at them.
    try {
      await this.sync.flush();
    } catch (err) {
      for (const p of prepared) {
        fs.rmSync(p.tmp, { force: true });
        outcomes[p.i] = failure(err);
      }
      return outcomes;
    }
    // 3. Each renamed over its secret's name: rename(2) replaces the old version, or makes a new
    //    secret, all at once.
    const renamed: typeof prepared = [];
    for (const p of prepared) {
      try {
        fs.renameSync(p.tmp, p.file);
        renamed.push(p);
      } catch (err) {
        fs.rmSync(p.tmp, { force: true });
        outcomes[p.i] = failure(err);
      }
    }
    // 4. The renames durable before anyone hears of them.
    let syncError: unknown;
    await this.sync.flush().catch((err) => (syncError = err));
    for (const p of renamed) outcomes[p.i] = syncError ? failure(syncError) : { ok: true, version: p.version };
    return outcomes;
  }

  close(): void {
    this.sync.close();
  }

  private prepare(w: SecretWrite) {
    const { namespace, name } = w.secret;
    const parent = path.join(this.dir, 'secrets', namespace);
    const file = path.join(parent, name);
    const current = currentVersion(file);
    checkExpected(`${namespace}/${name}`, current, w.expectedVersion);
    const version = (current ?? 0) + 1;
    if (!this.knownDirs.has(parent)) {
      fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
      this.knownDirs.add(parent);
    }
    const tmp = path.join(parent, `.${name}.tmp-${uniqueSuffix()}`);
    const data = encodeSecretRecord(w.secret, version);
    try {
      fs.writeFileSync(tmp, data, { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The namespace directory was removed under us.
      fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
      fs.writeFileSync(tmp, data, { flag: 'wx', mode: 0o600 });
    }
    return { file, tmp, version };
  }
}

/**
 * Writer threads. With secrets as directories of four files, four threads writing in different
 * directories finished 4,000 secrets in 8 s where one thread took 21 s on this machine's disk;
 * with one file per secret, 1 to 4 threads measured alike on its 2 cores, and 4 stay for disks
 * whose creates wait rather than compute. A namespace always goes to the same thread, so
 * threads do not contend for a directory's lock.
 */
export const WRITER_THREADS = 4;

/** The main thread's side: hands writes to the worker threads (started on first use) and awaits each answer. */
export class SecretWriter {
  private workers?: Worker[];
  private inThread?: BatchWriter;
  private nextId = 1;
  private readonly pending = new Map<number, { worker: Worker; resolve: (version: number) => void; reject: (err: Error) => void }>();
  /** Answers outstanding per worker: a worker with none is unref'd, so an idle store never holds the process open. */
  private readonly outstanding = new Map<Worker, number>();
  private queued: Array<{ write: SecretWrite; resolve: (v: number) => void; reject: (e: Error) => void }> = [];
  private draining = false;
  private readonly outbox = new Map<Worker, Request[]>();
  private outboxScheduled = false;

  /** `threads` 0 writes on the calling thread. CITADEL_STORE_WRITERS overrides the default. */
  constructor(private readonly dir: string, private readonly threads = writerThreadsFromEnv()) {}

  /** Writes one secret; resolves with its new version once it is durable, rejects with ConflictError on a lost compare-and-set. */
  write(write: SecretWrite): Promise<number> {
    const workers = this.startWorkers();
    if (!workers) return this.writeInThread(write);
    const worker = workers[shardOf(write.secret.namespace, workers.length)];
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { worker, resolve, reject });
      const n = (this.outstanding.get(worker) ?? 0) + 1;
      this.outstanding.set(worker, n);
      if (n === 1) worker.ref();
      this.post(worker, { id, write });
    });
  }

  /** Requests go out one message per worker per event-loop turn: a message costs more than a write's data. */
  private post(worker: Worker, req: Request): void {
    let box = this.outbox.get(worker);
    if (!box) this.outbox.set(worker, (box = []));
    box.push(req);
    if (this.outboxScheduled) return;
    this.outboxScheduled = true;
    setImmediate(() => {
      this.outboxScheduled = false;
      for (const [w, reqs] of this.outbox) if (reqs.length) w.postMessage(reqs);
      this.outbox.clear();
    });
  }

  async close(): Promise<void> {
    const workers = this.workers ?? [];
    this.workers = undefined;
    await Promise.all(workers.map((w) => w.terminate()));
    this.inThread?.close();
  }

  private startWorkers(): Worker[] | undefined {
    if (this.workers || this.inThread) return this.workers;
    if (this.threads <= 0) {
      this.inThread = new BatchWriter(this.dir);
      return undefined;
    }
    const workers: Worker[] = [];
    try {
      for (let i = 0; i < this.threads; i++) workers.push(this.startWorker(workers, i));
      this.workers = workers;
    } catch {
      for (const w of workers) void w.terminate();
      this.inThread = new BatchWriter(this.dir); // no worker threads here (or no compiled worker file)
    }
    return this.workers;
  }

  /**
   * One writer thread, slot `i` of `set`. A thread that dies fails the writes it held (their
   * outcome is unknown to the caller, as after a timeout) and is replaced; one that dies before
   * it ever answered cannot start here at all, so the store falls back to writing in-thread.
   */
  private startWorker(set: Worker[], i: number): Worker {
    // A writer holds one batch of small strings at a time; a small young generation keeps the threads cheap.
    const worker = new Worker(__filename, { workerData: { citadelSecretWriter: this.dir }, resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 } });
    let answered = false;
    let failed = false;
    const die = (err: Error) => {
      if (failed) return;
      failed = true;
      this.failAll(worker, err);
      if (this.workers !== set || set[i] !== worker) return; // closed, or already replaced
      if (answered) {
        set[i] = this.startWorker(set, i);
        return;
      }
      this.workers = undefined;
      for (const w of set) if (w !== worker) void w.terminate();
      for (const w of set) this.failAll(w, err);
      this.inThread = new BatchWriter(this.dir);
    };
    worker.on('message', (replies: Reply[]) => {
      answered = true;
      for (const r of replies) this.settle(r);
    });
    worker.on('error', (err) => die(new Error(`a file store writer thread failed: ${err.message}`)));
    worker.on('exit', (code) => die(new Error(`a file store writer thread exited (code ${code})`)));
    worker.unref();
    return worker;
  }

  private settle({ id, outcome }: Reply): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.release(p.worker);
    if (outcome.ok) p.resolve(outcome.version);
    else p.reject(toError(outcome));
  }

  private release(worker: Worker): void {
    const n = (this.outstanding.get(worker) ?? 1) - 1;
    this.outstanding.set(worker, n);
    if (n === 0) worker.unref();
  }

  private failAll(worker: Worker, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== worker) continue;
      this.pending.delete(id);
      p.reject(err);
    }
    this.outstanding.delete(worker);
  }

  /** The fallback: the same batches, gathered per event-loop turn, on this thread. */
  private writeInThread(write: SecretWrite): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queued.push({ write, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.queued.length) {
      const batch = this.queued;
      this.queued = [];
      const outcomes = await this.inThread!.writeBatch(batch.map((b) => b.write));
      batch.forEach((b, i) => {
        const o = outcomes[i];
        if (o.ok) b.resolve(o.version);
        else b.reject(toError(o));
      });
    }
    this.draining = false;
  }
}

function writerThreadsFromEnv(): number {
  const n = Number(process.env.CITADEL_STORE_WRITERS);
  return process.env.CITADEL_STORE_WRITERS !== undefined && Number.isInteger(n) && n >= 0 ? Math.min(n, 32) : WRITER_THREADS;
}

/** A stable thread for a namespace (FNV-1a of its name). */
function shardOf(namespace: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < namespace.length; i++) h = Math.imul(h ^ namespace.charCodeAt(i), 0x01000193);
  return (h >>> 0) % n;
}

function toError(o: Extract<Outcome, { ok: false }>): Error {
  if (o.conflict) return new ConflictError(o.message);
  const err = new Error(o.message) as NodeJS.ErrnoException;
  if (o.code) err.code = o.code;
  return err;
}

function failure(err: unknown): Outcome {
  return { ok: false, conflict: err instanceof ConflictError, message: (err as Error)?.message ?? String(err), code: (err as NodeJS.ErrnoException)?.code };
}

/** The store's compare-and-set on a secret's version; ConflictError when it does not hold. */
export function checkExpected(what: string, current: number | undefined, expected: number | null | undefined): void {
  if (expected === undefined) return;
  if (expected === null && current !== undefined) throw new ConflictError(`secret ${what} already exists (version ${current})`);
  if (expected !== null && current !== expected) throw new ConflictError(`secret ${what} is at version ${current ?? 'none'}, not ${expected}`);
}

/**
 * The version of the secret in `file`, or undefined when there is none. The document is checked
 * whole: one that is not citadel's (broken or edited by hand) is an error, never overwritten.
 */
export function currentVersion(file: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return decodeSecretRecord(`file ${file}`, text).version ?? 0;
}

/** The worker: batches whatever writes have arrived while the previous batch was syncing. */
function runWorker(dir: string): void {
  const writer = new BatchWriter(dir);
  let queue: Request[] = [];
  let running = false;
  const run = async () => {
    running = true;
    while (queue.length) {
      const batch = queue;
      queue = [];
      const outcomes = await writer.writeBatch(batch.map((r) => r.write));
      parentPort!.postMessage(batch.map((r, i): Reply => ({ id: r.id, outcome: outcomes[i] })));
    }
    running = false;
  };
  parentPort!.on('message', (reqs: Request[]) => {
    queue.push(...reqs);
    if (!running) void run();
  });
}

if (!isMainThread && (workerData as { citadelSecretWriter?: string } | null)?.citadelSecretWriter) {
  runWorker((workerData as { citadelSecretWriter: string }).citadelSecretWriter);
}
