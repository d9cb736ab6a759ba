import { errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import type { PolicyDocument } from '../mesh/policy';
import { readPolicies } from '../store/policy-apply';
import type { Store } from '../store/store';
import type { PolicySource } from './xds-server';

/**
 * The policy set of the store (`citadel policy apply`), kept current: every replica watches the
 * same value, so all serve the same policy. Until the first read, and while the store cannot be
 * read, the last set read stays in force (at first: none, which is Istio's PERMISSIVE default).
 */
export class StoredPolicies implements PolicySource {
  private documents: readonly PolicyDocument[] = [];
  private version = -1;
  private readonly listeners = new Set<() => void>();
  private unwatch: (() => void) | undefined;
  private reading: Promise<void> = Promise.resolve();

  constructor(private readonly store: Store, private readonly logger: Logger) {}

  /** Watches, then reads (so no change between the two is missed). */
  async start(): Promise<void> {
    this.unwatch = this.store.watchPolicies(() => this.reread());
    this.reread();
    await this.reading;
  }

  stop(): void {
    this.unwatch?.();
  }

  current(): readonly PolicyDocument[] {
    return this.documents;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private reread(): void {
    this.reading = this.reading.then(async () => {
      try {
        const { documents, version } = await readPolicies(this.store);
        if (version === this.version) return;
        this.version = version;
        this.documents = documents;
        this.logger.info('policy loaded', { version, documents: documents.length });
        for (const l of [...this.listeners]) l();
      } catch (err) {
        this.logger.error('cannot read the policy set; keeping the last one', { error: errorMessage(err) });
      }
    });
  }
}
