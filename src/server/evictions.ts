/**
 * `citadel node evict` as every replica sees it: the evictions in the store, read before the
 * first call is served and kept current through the store's watch, so an evicted node's
 * certificate is refused by every replica within moments of the command.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log';
import { isEvicted, NodeEviction, Store } from '../store/store';

export class NodeEvictions {
  private readonly byHost = new Map<string, NodeEviction>();
  private readonly emitter = new EventEmitter();
  private unsubscribe: () => void = () => {};

  private constructor(private readonly clockSkewMs: number, private readonly log: Logger) {
    this.emitter.setMaxListeners(0);
  }

  /** Reads the evictions, then follows them. `clockSkewMs`: how far the CA back-dates notBefore. */
  static async start(store: Store, clockSkewMs: number, log: Logger): Promise<NodeEvictions> {
    const evictions = new NodeEvictions(clockSkewMs, log);
    evictions.apply(await store.listNodeEvictions());
    evictions.unsubscribe = store.watchNodeEvictions((all) => evictions.apply(all));
    return evictions;
  }

  /** The eviction that refuses a node certificate of `host` valid from `notBefore`, if any. */
  refusing(host: string, notBefore: Date): NodeEviction | undefined {
    const e = this.byHost.get(host);
    return isEvicted(notBefore.getTime() + this.clockSkewMs, e) ? e : undefined;
  }

  /** The eviction that refuses a join token for `host` created at `createdAt`, if any. */
  refusingToken(host: string, createdAt: string): NodeEviction | undefined {
    const e = this.byHost.get(host);
    return isEvicted(Date.parse(createdAt), e) ? e : undefined;
  }

  /** Called with each new eviction; returns the unsubscribe function. */
  onEvicted(listener: (e: NodeEviction) => void): () => void {
    this.emitter.on('evicted', listener);
    return () => this.emitter.off('evicted', listener);
  }

  stop(): void {
    this.unsubscribe();
    this.emitter.removeAllListeners();
  }

  private apply(all: NodeEviction[]): void {
    for (const e of all) {
      const before = this.byHost.get(e.host);
      if (before && Date.parse(before.evictedAt) >= Date.parse(e.evictedAt)) continue;
      this.byHost.set(e.host, e);
      this.log.warn('node evicted: its node certificate is refused from now on', { host: e.host, evictedAt: e.evictedAt, reason: e.reason || undefined });
      this.emitter.emit('evicted', e);
    }
  }
}

/** The one message an evicted node hears, on every API (its agent logs it as a refusal, not an outage). */
export function evictedMessage(e: NodeEviction): string {
  return `node ${e.host} was evicted at ${e.evictedAt}${e.reason ? ` (${e.reason})` : ''}: its node certificate is refused; admit it again with a new join token (citadel token create --host ${e.host})`;
}
