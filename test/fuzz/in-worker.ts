/** Runs a piece of code in a worker thread, so that one that never returns fails its test instead of hanging it. */
import { Worker } from 'node:worker_threads';

/** Evaluates `source` (CommonJS; it posts one message to `parentPort`) with `workerData`; `what` names it in the timeout's error. */
export function inWorker<T>(source: string, workerData: unknown, what: string, timeoutMs: number): Promise<T> {
  const worker = new Worker(source, { eval: true, workerData });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`${what} did not return within ${timeoutMs} ms`));
    }, timeoutMs);
    worker.once('message', (m: T) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
