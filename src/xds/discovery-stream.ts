/**
 * The discovery protocol, state of the world, as both the node agent's SDS and the server's xDS
 * speak it: per stream and per type URL, what the client subscribed to, what was sent (version,
 * nonce, resource versions), what was ACKed or NACKed. It knows nothing of what the resources
 * are: a ResourceSource answers "what exists now", and the owner calls `refresh()` when that may
 * have changed.
 *
 * The rules are the anchors' (ISTIO-FACTS.md, Istio agent and SPIRE; Consul's lesson for NACKs):
 * - the first request of a type is answered with what exists (or as soon as it does);
 * - an ACK gets no answer; a request whose nonce is not the last one sent is stale and ignored;
 * - a NACK is recorded and never answered by re-sending the same content: only a change of
 *   content is sent (go-control-plane's resend loop, its issue #962, is what this avoids);
 * - a request that adds names gets (only) the added ones, for named types; wildcard types (an
 *   empty name list on LDS/CDS) always get the whole set, since a missing resource means removed;
 * - the node of the first message is kept (later ones may omit it).
 */
import type { DiscoveryRequest, DiscoveryResponse, EncodedResource, XdsNode } from '../api/discovery';

/** One resource of a type: its name, a version of its content (a hash), and its message bytes. */
export interface Resource extends EncodedResource {
  version: string;
}

/** What one stream asks for of a type: named resources, or all of them (wildcard). */
export type Subscription = { wildcard: true } | { wildcard: false; names: ReadonlySet<string> };

/**
 * Where a stream's resources come from. `resources` returns what exists now for the subscription
 * (named: only those of the names that exist), or undefined when the source is not ready yet (the
 * stream waits for a refresh). It may throw a StreamError to end the stream (a name the client may
 * not have).
 */
export interface ResourceSource {
  resources(typeUrl: string, subscription: Subscription, stream: DiscoveryStream): ReadonlyMap<string, Resource> | undefined;
}

/** Ends a stream with a gRPC status (the transport maps it). */
export class StreamError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = 'StreamError';
  }
}

/** A type's state on one stream, for proxy-status: SYNCED, NOT SENT, STALE (sent, not ACKed), NACKED. */
export interface TypeState {
  typeUrl: string;
  subscription: Subscription;
  /** The last response sent: its version and nonce. */
  sentVersion?: string;
  sentNonce?: string;
  /** What the client last accepted (from its ACK or NACK). */
  ackedVersion?: string;
  /** Set while the last response is NACKed: the client's error. */
  nack?: { message: string; nonce: string; at: number };
  /** Resource name -> content version, as last sent. */
  sent: Map<string, string>;
}

export type SyncStatus = 'SYNCED' | 'NOT SENT' | 'STALE' | 'NACKED';

export function syncStatus(s: TypeState): SyncStatus {
  if (s.nack) return 'NACKED';
  if (s.sentVersion === undefined) return 'NOT SENT';
  return s.ackedVersion === s.sentVersion ? 'SYNCED' : 'STALE';
}

export interface DiscoveryStreamOptions {
  source: ResourceSource;
  /** Sends one response on the stream. */
  send(response: DiscoveryResponse): void;
  /** Types answered in this order when several change at once (ADS: CDS, EDS, LDS, RDS). */
  typeOrder?: readonly string[];
  /** Whether a type's empty name list means "everything" (LDS, CDS) or "nothing yet" (EDS, RDS, SDS). */
  isWildcardType?(typeUrl: string): boolean;
  /** A NACK arrived (logged and counted by the owner; never answered). */
  onNack?(typeUrl: string, message: string): void;
  /** Sent as control_plane.identifier. */
  controlPlane?: string;
}

let nonceCounter = 0;

export class DiscoveryStream {
  private readonly types = new Map<string, TypeState>();
  private nodeInfo: XdsNode | undefined;
  private versionCounter = 0;

  constructor(private readonly opts: DiscoveryStreamOptions) {}

  /** The node from the stream's first message that carried one. */
  get node(): XdsNode | undefined {
    return this.nodeInfo;
  }

  /** Every type's state, for proxy-status. */
  state(): ReadonlyMap<string, TypeState> {
    return this.types;
  }

  /** Handles one request; may send a response. Throws StreamError to end the stream. */
  receive(req: DiscoveryRequest): void {
    if (!this.nodeInfo && req.node) this.nodeInfo = req.node;
    const typeUrl = req.typeUrl;
    if (!typeUrl) throw new StreamError(3, 'a DiscoveryRequest without type_url');
    let state = this.types.get(typeUrl);
    const subscription = this.subscriptionOf(typeUrl, req.resourceNames);
    if (!state) {
      state = { typeUrl, subscription, sent: new Map() };
      this.types.set(typeUrl, state);
      if (req.versionInfo) state.ackedVersion = req.versionInfo; // a reconnect: what it has is what it last accepted
      return this.respond(state, 'initial');
    }
    if (req.responseNonce !== (state.sentNonce ?? '')) return; // stale: answered by a later response already
    state.ackedVersion = req.versionInfo || state.ackedVersion;
    if (req.errorDetail) {
      state.nack = { message: req.errorDetail.message, nonce: req.responseNonce, at: Date.now() };
      this.opts.onNack?.(typeUrl, req.errorDetail.message);
      return; // never re-send what was refused: wait for new content
    }
    state.nack = undefined;
    if (!sameSubscription(state.subscription, subscription)) {
      const before = state.subscription;
      state.subscription = subscription;
      return this.respond(state, 'subscription', before);
    }
    // An ACK: nothing to send. But a response held back while the source was not ready goes out now.
    if (state.sentVersion === undefined) this.respond(state, 'initial');
  }

  /** The source's content may have changed: send every subscribed type whose content did, in type order. */
  refresh(typeUrls?: Iterable<string>, opts: { force?: boolean } = {}): void {
    const wanted = typeUrls ? new Set(typeUrls) : undefined;
    for (const state of this.ordered()) {
      if (wanted && !wanted.has(state.typeUrl)) continue;
      this.respond(state, opts.force ? 'force' : 'change');
    }
  }

  private ordered(): TypeState[] {
    const order = this.opts.typeOrder ?? [];
    const rank = (t: string) => {
      const i = order.indexOf(t);
      return i < 0 ? order.length : i;
    };
    return [...this.types.values()].sort((a, b) => rank(a.typeUrl) - rank(b.typeUrl));
  }

  private subscriptionOf(typeUrl: string, names: string[]): Subscription {
    if (names.length === 0 && (this.opts.isWildcardType?.(typeUrl) ?? false)) return { wildcard: true };
    if (names.length === 1 && names[0] === '*') return { wildcard: true };
    return { wildcard: false, names: new Set(names) };
  }

  /**
   * Sends what the client should have now, if anything: wildcard types the whole set when any of
   * it changed; named types the resources that changed, or (on a new subscription) the added ones.
   */
  private respond(state: TypeState, why: 'initial' | 'subscription' | 'change' | 'force', before?: Subscription): void {
    const current = this.opts.source.resources(state.typeUrl, state.subscription, this);
    if (current === undefined) return; // not ready: a refresh will come
    let resources: Resource[];
    if (state.subscription.wildcard) {
      const changed = why === 'initial' || why === 'force' || current.size !== state.sent.size || [...current.values()].some((r) => state.sent.get(r.name) !== r.version);
      if (!changed) return;
      resources = [...current.values()];
    } else {
      const names = state.subscription.names;
      const added = before && !before.wildcard ? [...names].filter((n) => !before.names.has(n)) : [...names];
      resources = [];
      for (const r of current.values()) {
        if (!names.has(r.name)) continue;
        const isNew = why === 'subscription' ? added.includes(r.name) : false;
        if (why === 'initial' || why === 'force' || isNew || state.sent.get(r.name) !== r.version) resources.push(r);
      }
      for (const n of [...state.sent.keys()]) if (!names.has(n)) state.sent.delete(n);
      if (resources.length === 0 && !(why === 'initial' && current.size === 0 && names.size === 0)) return;
    }
    const versionInfo = String(++this.versionCounter);
    const nonce = `${(++nonceCounter).toString(36)}`;
    if (state.subscription.wildcard) state.sent.clear();
    for (const r of resources) state.sent.set(r.name, r.version);
    state.sentVersion = versionInfo;
    state.sentNonce = nonce;
    this.opts.send({ versionInfo, resources, typeUrl: state.typeUrl, nonce, controlPlane: this.opts.controlPlane });
  }
}

function sameSubscription(a: Subscription, b: Subscription): boolean {
  if (a.wildcard || b.wildcard) return a.wildcard === b.wildcard;
  if (a.names.size !== b.names.size) return false;
  for (const n of a.names) if (!b.names.has(n)) return false;
  return true;
}
