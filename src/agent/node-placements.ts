import { EventEmitter } from 'node:events';
import type { PlacementsUpdate } from '../api/ca-api';
import type { BackoffOptions } from '../common/backoff';
import type { Logger } from '../common/log';
import { AccountRef, accountKey, checkAccount } from '../pki/identity';
import { followFeed } from './feed';
import type { NodeCredentials } from './node-credential';

export interface PlacementChange {
  placed: AccountRef[];
  removed: AccountRef[];
}

/**
 * The identities Marathon places on this node, from the CA's placement feed (no keys: in SDS mode
 * the agent makes them). Emits `change` with what was placed and removed; a snapshot after a
 * reconnect is compared with what was known, so only real changes are emitted.
 */
export class NodePlacements extends EventEmitter {
  private readonly placed = new Map<string, AccountRef>();
  private loop: Promise<void> | undefined;
  private firstSnapshot: Promise<void>;
  private resolveFirst!: () => void;

  constructor(private readonly opts: { credentials: NodeCredentials; logger: Logger; backoff?: BackoffOptions; signal: AbortSignal }) {
    super();
    this.firstSnapshot = new Promise((resolve) => (this.resolveFirst = resolve));
  }

  current(): AccountRef[] {
    return [...this.placed.values()];
  }

  has(account: AccountRef): boolean {
    return this.placed.has(accountKey(account));
  }

  /** Starts following; resolves after the first snapshot (or when stopped). */
  start(): Promise<void> {
    this.loop ??= followFeed({
      what: 'placement feed',
      credentials: this.opts.credentials,
      open: (client) => client.watchPlacements(),
      onMessage: (u) => this.apply(u),
      backoff: this.opts.backoff,
      logger: this.opts.logger,
      signal: this.opts.signal,
    });
    this.opts.signal.addEventListener('abort', () => this.resolveFirst(), { once: true });
    return this.firstSnapshot;
  }

  async stopped(): Promise<void> {
    await this.loop;
  }

  private apply(u: PlacementsUpdate): void {
    const placed: AccountRef[] = [];
    const removed: AccountRef[] = [];
    const valid = (a: AccountRef) => {
      const problem = checkAccount(a);
      if (problem) this.opts.logger.warn('ignoring an invalid identity from the placement feed', { problem });
      return !problem;
    };
    if (u.snapshot) {
      const now = new Map(u.placed.filter(valid).map((a) => [accountKey(a), a]));
      for (const [k, a] of this.placed) if (!now.has(k)) removed.push(a);
      for (const [k, a] of now) if (!this.placed.has(k)) placed.push(a);
      this.placed.clear();
      for (const [k, a] of now) this.placed.set(k, a);
    } else {
      for (const a of u.placed.filter(valid)) {
        if (this.placed.has(accountKey(a))) continue;
        this.placed.set(accountKey(a), a);
        placed.push(a);
      }
      for (const a of u.removed) if (this.placed.delete(accountKey(a))) removed.push(a);
    }
    if (u.snapshot) this.resolveFirst();
    if (placed.length || removed.length) this.emit('change', { placed, removed } satisfies PlacementChange);
  }
}
