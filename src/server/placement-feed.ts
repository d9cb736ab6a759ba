import type { PlacementsUpdate } from '../api/ca-api';
import { AccountRef, accountKey } from '../pki/identity';
import type { PlacementSource } from './placement';

/** How long Marathon changes are gathered before the subscribers are recomputed. */
const DEBOUNCE_MS = 25;

interface Subscription {
  host: string;
  send(update: PlacementsUpdate): void;
  /** What the node was last told is placed on it, by accountKey. */
  sent: Map<string, AccountRef>;
}

/**
 * Tells each node which workload identities Marathon places on its host, and nothing more: a node
 * agent in SDS mode makes the keys of those identities itself. A snapshot first, then what was
 * placed and removed at each change.
 */
export class PlacementFeed {
  private readonly subscriptions = new Set<Subscription>();
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly placements: PlacementSource) {
    this.unsubscribe = placements.onChange(() => this.schedule());
  }

  subscribe(host: string, send: (u: PlacementsUpdate) => void): () => void {
    const placed = this.placements.identitiesOnHost(host);
    const sub: Subscription = { host, send, sent: new Map(placed.map((a) => [accountKey(a), a])) };
    this.subscriptions.add(sub);
    send({ snapshot: true, placed, removed: [] });
    return () => this.subscriptions.delete(sub);
  }

  stop(): void {
    this.unsubscribe();
    clearTimeout(this.timer);
    this.subscriptions.clear();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const sub of this.subscriptions) this.push(sub);
    }, DEBOUNCE_MS);
  }

  private push(sub: Subscription): void {
    const now = new Map(this.placements.identitiesOnHost(sub.host).map((a) => [accountKey(a), a]));
    const placed = [...now].filter(([k]) => !sub.sent.has(k)).map(([, a]) => a);
    const removed = [...sub.sent].filter(([k]) => !now.has(k)).map(([, a]) => a);
    sub.sent = now;
    if (placed.length || removed.length) sub.send({ snapshot: false, placed, removed });
  }
}
