import { status as grpcStatus, type ClientReadableStream } from '@grpc/grpc-js';
import { Backoff, BackoffOptions, sleep } from '../common/backoff';
import type { Logger } from '../common/log';
import type { CaClient } from './ca-client';
import { caRefusal } from './ca-refusal';
import type { NodeCredentials } from './node-credential';

export interface FeedOptions<T> {
  /** For logs: "secret feed", "placement feed". */
  what: string;
  credentials: NodeCredentials;
  open(client: CaClient): ClientReadableStream<T>;
  onMessage(message: T): void;
  backoff?: BackoffOptions;
  logger: Logger;
  signal: AbortSignal;
}

/**
 * Follows one of the CA's node feeds until `signal` aborts: reconnects with backoff when the
 * stream ends or fails (the CA restarting, an outage), and at once on a fresh connection when
 * the node credential is renewed (the server ends a feed when the certificate it was opened with
 * expires).
 */
export async function followFeed<T>(opts: FeedOptions<T>): Promise<void> {
  const backoff = new Backoff(opts.backoff);
  let lastRefusal: string | undefined;
  while (!opts.signal.aborted) {
    const client = opts.credentials.client();
    let renewed = false;
    const outcome = await new Promise<{ error?: Error & { code?: number; details?: string } }>((resolve) => {
      const stream = opts.open(client);
      const onRenewed = () => {
        renewed = true;
        stream.cancel();
      };
      const onAbort = () => stream.cancel();
      opts.credentials.once('renewed', onRenewed);
      opts.signal.addEventListener('abort', onAbort, { once: true });
      const done = (r: { error?: Error & { code?: number; details?: string } }) => {
        opts.credentials.off('renewed', onRenewed);
        opts.signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      stream.on('data', (m: T) => {
        backoff.reset();
        opts.onMessage(m);
      });
      stream.on('error', (error) => done({ error }));
      stream.on('end', () => done({}));
    });
    client.close();
    if (opts.signal.aborted) return;
    if (renewed && outcome.error?.code === grpcStatus.CANCELLED) continue;
    const delay = backoff.next();
    const refusal = caRefusal(outcome.error);
    if (refusal) {
      // Said once per reason, then quietly retried: the files stay until their certificates expire.
      const log = refusal === lastRefusal ? opts.logger.debug : opts.logger.error;
      log(`the CA refuses this node's ${opts.what}; it gets nothing more, and keeps the files it has until their certificates expire`, { refusal, retryInMs: delay });
      lastRefusal = refusal;
      opts.credentials.refused(refusal);
    } else {
      lastRefusal = undefined;
      opts.logger.warn(`${opts.what} disconnected (CA unreachable or restarting); keeping what this node has and retrying`, { error: outcome.error?.details ?? outcome.error?.message ?? 'stream ended', retryInMs: delay });
    }
    await sleep(delay, opts.signal);
  }
}
