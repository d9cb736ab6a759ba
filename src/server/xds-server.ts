/**
 * The xDS control plane in `citadel server` (`--xds-port`, 15012 as istiod): ADS and the separate
 * CDS/EDS/LDS/RDS services, v3, state of the world, over mTLS; on ADS also SDS, the file-based
 * Secrets of files-mode sidecars (names of files, never keys). A caller's certificate decides
 * whose configuration it may have: a workload's own (files-mode sidecars dial here directly), or,
 * for a node agent proxying a sidecar's stream from its per-identity socket, the identity it names
 * (header `x-citadel-identity`) if Marathon places that identity on the node.
 *
 * Protocol: src/xds (ACK/NACK, nonces, per-type state). Configuration: src/mesh's generator, from
 * one consistent snapshot of mesh and policy per push; pushes are debounced (100 ms after the last
 * change, at most 1 s) and go out in ADS order, CDS, EDS, LDS, RDS, SDS; after a push that changes
 * clusters, EDS is sent again (Envoy holds the CDS ACK until the new clusters have endpoints), and
 * after one that changes clusters or listeners, SDS is sent again, last: a TLS context Envoy
 * builds for them may subscribe anew to a secret name it already had, and waits for an answer.
 */
import * as os from 'node:os';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createHash } from 'node:crypto';
import type { DiscoveryRequest, DiscoveryResponse, XdsNode } from '../api/discovery';
import { xdsStreamMethods } from '../api/discovery-services';
import { AnyEncodings, encodeEnvoyJson } from '../api/envoy-protos';
import { unpooled } from '../api/wire';
import { BidiCall, CallContext, GrpcError, GrpcServer, GrpcServerOptions, status } from '../api/grpc/server';
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import type { MonitoringServer } from '../common/monitoring';
import { META } from '../mesh/bootstrap/contract';
import { MeshGenerator } from '../mesh/generator';
import type { GrpcResourceNames } from '../mesh/grpc/generator';
import type { MeshSnapshot, ProxyNode } from '../mesh/model';
import type { PolicyDocument } from '../mesh/policy';
import { GeneratedResources, TYPE_URL, XdsResource } from '../mesh/resources';
import { parseSpiffeId, spiffeId, WorkloadIdentity } from '../pki/identity';
import { DiscoveryStream, Resource, StreamError, Subscription, syncStatus } from '../xds/discovery-stream';
import { CallerAuthenticator, isNodeCaller } from './authn';
import type { PlacementSource } from './placement';
import type { ServerCertificate } from './server-certificate';

/** The header a node agent names the proxied identity with. */
export const IDENTITY_HEADER = 'x-citadel-identity';

/** The mesh model as it changes (src/mesh/services.ts builds it from Marathon). */
export interface MeshSource {
  current(): MeshSnapshot;
  onChange(listener: () => void): () => void;
}

/** The policy set as it changes (kept in the store by `citadel policy apply`). */
export interface PolicySource {
  /** One array per version: replaced, never changed. */
  current(): readonly PolicyDocument[];
  onChange(listener: () => void): () => void;
}

export interface XdsServerOptions {
  trustDomain: string;
  rootNamespace?: string;
  serverCertificate: ServerCertificate;
  placements: PlacementSource;
  mesh: MeshSource;
  policies: PolicySource;
  /** `--xds-port` (15012); 0 picks a free port. */
  port: number;
  host?: string;
  logger: Logger;
  registry: Registry;
  monitoring?: MonitoringServer;
  /** Pushes wait this long after the last change (100 ms) ... */
  quietMs?: number;
  /** ... but never longer than this after the first (1 s). */
  maxDelayMs?: number;
  /** `--max-concurrent-streams`, advertised in HTTP/2 SETTINGS (the transport's default, 1000). */
  maxConcurrentStreams?: number;
  /** The transport's timeouts, as the CA port has them (tests shorten them). */
  timeouts?: Pick<GrpcServerOptions, 'requestTimeoutMs' | 'handshakeTimeoutMs' | 'idleConnectionTimeoutMs'>;
}

/** Largest xDS request accepted: a real Envoy's first request is about 60 KB of node extensions, so not the CA's 64 KiB. */
export const XDS_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The order ADS answers several changed types in, as Istio's PushOrder: clusters and their endpoints before the listeners and routes that use them, secrets last. */
export const ADS_ORDER: readonly string[] = [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route, TYPE_URL.secret];
const SHORT: Record<string, string> = { [TYPE_URL.cluster]: 'CDS', [TYPE_URL.endpoint]: 'EDS', [TYPE_URL.listener]: 'LDS', [TYPE_URL.route]: 'RDS', [TYPE_URL.secret]: 'SDS' };
const KIND: Record<string, keyof Omit<GeneratedResources, 'warnings'>> = {
  [TYPE_URL.cluster]: 'clusters',
  [TYPE_URL.endpoint]: 'endpoints',
  [TYPE_URL.listener]: 'listeners',
  [TYPE_URL.route]: 'routes',
  [TYPE_URL.secret]: 'secrets',
};

/** The types proxy-status lists for a node even before it asks: SDS only where the server serves it (files-mode sidecars). */
function expectedTypes(node: ProxyNode): string[] {
  return node.generator === 'envoy' && node.certMode === 'files' ? ['CDS', 'EDS', 'LDS', 'RDS', 'SDS'] : ['CDS', 'EDS', 'LDS', 'RDS'];
}

/** One proxy (an Envoy or a gRPC process), with its streams: one for ADS, or up to four. */
interface ProxyState {
  node: ProxyNode;
  identity: WorkloadIdentity;
  /** How it reached us: `direct` (its own certificate) or the node agent's host. */
  via: string;
  connectedAt: string;
  generated?: GeneratedResources;
  /**
   * What every stream of it was last brought up to date with: its first generation, then each
   * push's. A request answered in between (a new EDS or SDS name) generates from the newer
   * snapshot too, but answers only its own type, so a push compares against this, not `generated`.
   */
  pushed?: GeneratedResources;
  streams: Set<DiscoveryStream>;
  warned: Set<string>;
}

/** What proxy-status shows of one proxy. */
export interface ProxyStatus {
  nodeId: string;
  marathonId: string;
  identity: string;
  via: string;
  replica: string;
  connectedAt: string;
  types: Record<string, { status: string; sentVersion?: string; ackedVersion?: string; error?: string }>;
}

export class XdsServer {
  private readonly server: GrpcServer;
  private readonly authn: CallerAuthenticator;
  private readonly generator = new MeshGenerator();
  private readonly proxies = new Map<string, ProxyState>();
  /** Encodings by resource object: the generator returns the same object for the same content. */
  private readonly encoded = new WeakMap<XdsResource, Resource>();
  /** ... and of the Any values inside them, which the generator shares between resources (filter chains, TLS contexts). */
  private readonly anyEncodings: AnyEncodings = new WeakMap();
  private readonly metrics: { proxies: Gauge; pushes: Counter<'type'>; nacks: Counter<'type'>; pushSeconds: Histogram };
  private readonly replica = `${os.hostname()}:${process.pid}`;
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt = 0;
  private readonly unsubscribe: Array<() => void> = [];
  port = 0;

  constructor(private readonly opts: XdsServerOptions) {
    this.authn = new CallerAuthenticator(opts.trustDomain);
    this.server = new GrpcServer({
      tls: opts.serverCertificate.tls,
      maxMessageBytes: XDS_MAX_MESSAGE_BYTES,
      ...(opts.maxConcurrentStreams !== undefined && { maxConcurrentStreams: opts.maxConcurrentStreams }),
      ...opts.timeouts,
      onError: (err, path) => opts.logger.error('xDS request failed', { path, error: err.message }),
    });
    opts.serverCertificate.onRenew((tls) => this.server.setSecureContext(tls));
    for (const { method, typeUrl } of xdsStreamMethods()) this.server.bidi(method, (call) => this.stream(call, typeUrl));
    const registers = [opts.registry];
    const single = <T>(name: string, make: () => T): T => (opts.registry.getSingleMetric(name) as T | undefined) ?? make();
    this.metrics = {
      proxies: single('citadel_xds_connected_proxies', () => new Gauge({ name: 'citadel_xds_connected_proxies', help: 'Proxies (Envoy sidecars, proxyless gRPC) connected to this replica.', registers })),
      pushes: single('citadel_xds_pushes_total', () => new Counter({ name: 'citadel_xds_pushes_total', help: 'xDS responses sent, by type.', labelNames: ['type'], registers })),
      nacks: single('citadel_xds_nacks_total', () => new Counter({ name: 'citadel_xds_nacks_total', help: 'xDS responses a proxy refused (NACK), by type; see citadel proxy-status.', labelNames: ['type'], registers })),
      pushSeconds: single('citadel_xds_push_duration_seconds', () => new Histogram({ name: 'citadel_xds_push_duration_seconds', help: 'Time to regenerate and send a push to every connected proxy.', buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5], registers })),
    };
    opts.monitoring?.addJsonRoute('/debug/syncz', () => this.status());
  }

  async start(): Promise<number> {
    const host = this.opts.host ?? '0.0.0.0';
    try {
      this.port = await this.server.listen(this.opts.port, host);
    } catch (err) {
      throw new Error(`cannot listen for xDS on ${host}:${this.opts.port}: ${(err as Error).message}`);
    }
    this.unsubscribe.push(this.opts.mesh.onChange(() => this.schedule()), this.opts.policies.onChange(() => this.schedule()), this.opts.placements.onChange(() => this.schedule()));
    this.opts.logger.info('xDS listening', { port: this.port, services: ['ADS', 'CDS', 'EDS', 'LDS', 'RDS'] });
    return this.port;
  }

  async close(): Promise<void> {
    for (const u of this.unsubscribe) u();
    clearTimeout(this.timer);
    await this.server.close();
  }

  /** Every connected proxy and where each type stands (citadel proxy-status, /debug/syncz). */
  status(): ProxyStatus[] {
    return [...this.proxies.entries()].map(([nodeId, p]) => {
      const types: ProxyStatus['types'] = {};
      for (const s of p.streams) {
        for (const [typeUrl, t] of s.state()) {
          types[SHORT[typeUrl] ?? typeUrl] = { status: syncStatus(t), sentVersion: t.sentVersion, ackedVersion: t.ackedVersion, ...(t.nack ? { error: t.nack.message } : {}) };
        }
      }
      for (const short of expectedTypes(p.node)) types[short] ??= { status: 'NOT SENT' };
      return { nodeId, marathonId: p.node.marathonId, identity: spiffeId(p.identity), via: p.via, replica: this.replica, connectedAt: p.connectedAt, types };
    });
  }

  /** Who may have configuration on this stream: the caller's own identity, or the one a node agent names for a proxy on its node. */
  private identityOf(ctx: CallContext): { identity: WorkloadIdentity; via: string } {
    const auth = this.authn.authenticate(ctx);
    if (!auth.ok) throw new GrpcError(status.UNAUTHENTICATED, auth.message);
    const caller = auth.caller;
    if (!isNodeCaller(caller)) return { identity: caller.identity, via: 'direct' };
    const named = ctx.metadata[IDENTITY_HEADER];
    if (typeof named !== 'string') throw new GrpcError(status.INVALID_ARGUMENT, `a node agent must name the proxied identity in the ${IDENTITY_HEADER} header`);
    let identity;
    try {
      identity = parseSpiffeId(named);
    } catch (err) {
      throw new GrpcError(status.INVALID_ARGUMENT, `${IDENTITY_HEADER}: ${(err as Error).message}`);
    }
    if (identity.kind !== 'workload' || identity.trustDomain !== this.opts.trustDomain) throw new GrpcError(status.PERMISSION_DENIED, `${named} is not a workload identity of trust domain ${this.opts.trustDomain}`);
    if (!this.opts.placements.isPlacedOn(identity, caller.identity.host)) {
      throw new GrpcError(status.PERMISSION_DENIED, `Marathon places no task of ${named} on host ${caller.identity.host}; a node may proxy only the identities running on it`);
    }
    return { identity, via: caller.identity.host };
  }

  private stream(call: BidiCall<DiscoveryRequest, DiscoveryResponse>, fixedType: string | undefined): void {
    let who: { identity: WorkloadIdentity; via: string };
    try {
      who = this.identityOf(call.ctx);
    } catch (err) {
      call.end(err as GrpcError);
      // A certificate that expired while its connection lived on: close the connection (GOAWAY) too, so the client
      // dials again with the certificate it has now (a files-mode Envoy re-reads its files) instead of retrying here.
      if (err instanceof GrpcError && err.code === status.UNAUTHENTICATED) call.ctx.session.close();
      return;
    }
    let proxy: ProxyState | undefined;
    const discovery: DiscoveryStream = new DiscoveryStream({
      source: { resources: (typeUrl, sub) => this.resources(proxy!, typeUrl, sub, discovery) },
      send: (r) => {
        call.write(r);
        this.metrics.pushes.inc({ type: SHORT[r.typeUrl] ?? 'other' });
      },
      typeOrder: ADS_ORDER,
      // gRPC asks for everything by name (gRFC A27): its empty list unsubscribes the last name, it never means "all".
      isWildcardType: (t) => proxy?.node.generator !== 'grpc' && (t === TYPE_URL.listener || t === TYPE_URL.cluster),
      onNack: (typeUrl, message) => {
        this.metrics.nacks.inc({ type: SHORT[typeUrl] ?? 'other' });
        this.opts.logger.warn('a proxy refused configuration (NACK); it is sent again only when it changes', { node: proxy?.node.id, type: SHORT[typeUrl], error: message.slice(0, 300) });
      },
      controlPlane: `citadel@${this.replica}`,
    });
    call.onMessage((req) => {
      try {
        if (fixedType && req.typeUrl !== fixedType) throw new StreamError(status.INVALID_ARGUMENT, `this service serves ${fixedType}, not ${req.typeUrl}`);
        if (!proxy) proxy = this.join(req, who, discovery);
        discovery.receive(req);
      } catch (err) {
        call.end(err instanceof GrpcError ? err : err instanceof StreamError ? new GrpcError(err.code, err.message) : new GrpcError(status.INTERNAL, errorMessage(err)));
      }
    });
    // A client that half-closes sends no more requests (grpc-js-xds does when its last watch goes): end the
    // call, as go-control-plane does, or it would stay open, pushed to and never ACKed.
    call.onEnd(() => call.end());
    call.onClose(() => {
      if (!proxy) return;
      proxy.streams.delete(discovery);
      if (proxy.streams.size === 0 && this.proxies.get(proxy.node.id) === proxy) {
        this.proxies.delete(proxy.node.id);
        this.generator.forget(proxy.node.id);
        this.metrics.proxies.set(this.proxies.size);
        this.opts.logger.info('proxy disconnected', { node: proxy.node.id });
      }
    });
  }

  /** The first request names the node: who it is, checked against the authenticated identity and Marathon. */
  private join(req: DiscoveryRequest, who: { identity: WorkloadIdentity; via: string }, stream: DiscoveryStream): ProxyState {
    if (!req.node) throw new StreamError(status.INVALID_ARGUMENT, 'the first request of a stream must carry the node');
    const node = proxyNodeOf(req.node, who.identity);
    const service = this.opts.mesh.current().services.get(node.marathonId);
    if (service && (service.namespace !== who.identity.namespace || service.serviceAccount !== who.identity.serviceAccount)) {
      throw new StreamError(status.PERMISSION_DENIED, `${node.marathonId} runs as spiffe://${this.opts.trustDomain}/ns/${service.namespace}/sa/${service.serviceAccount}, not ${spiffeId(who.identity)}; a proxy gets only its own workload's configuration`);
    }
    let p = this.proxies.get(node.id);
    if (!p || spiffeId(p.identity) !== spiffeId(who.identity)) {
      p = { node, identity: who.identity, via: who.via, connectedAt: new Date().toISOString(), streams: new Set(), warned: new Set() };
      this.proxies.set(node.id, p);
      this.metrics.proxies.set(this.proxies.size);
      this.opts.logger.info('proxy connected', { node: node.id, workload: node.marathonId, identity: spiffeId(who.identity), via: who.via, generator: node.generator });
    }
    p.streams.add(stream);
    return p;
  }

  private resources(p: ProxyState, typeUrl: string, sub: Subscription, stream: DiscoveryStream): ReadonlyMap<string, Resource> | undefined {
    const kind = KIND[typeUrl];
    if (!kind) throw new StreamError(status.INVALID_ARGUMENT, `type_url ${typeUrl} is not served (CDS, EDS, LDS, RDS; SDS on ADS)`);
    const generated = this.generate(p, stream, typeUrl, sub);
    const out = new Map<string, Resource>();
    for (const r of generated[kind]) {
      if (!sub.wildcard && !sub.names.has(r.name)) continue;
      out.set(r.name, this.encode(r));
    }
    return out;
  }

  private generate(p: ProxyState, stream?: DiscoveryStream, typeUrl?: string, sub?: Subscription): GeneratedResources {
    const inputs = { snapshot: this.opts.mesh.current(), policies: this.opts.policies.current(), trustDomain: this.opts.trustDomain, rootNamespace: this.opts.rootNamespace ?? 'istio-system' };
    const generated = this.generator.generate(inputs, p.node, p.node.generator === 'grpc' ? grpcNames(p, stream, typeUrl, sub) : undefined);
    if (generated !== p.generated) {
      for (const w of generated.warnings) {
        if (p.warned.has(w)) continue;
        p.warned.add(w);
        this.opts.logger.warn('configuration for a proxy left something out', { node: p.node.id, warning: w });
      }
      p.generated = generated;
      p.pushed ??= generated;
    }
    return generated;
  }

  private encode(r: XdsResource): Resource {
    let e = this.encoded.get(r);
    if (!e) {
      // Kept while the resource is: in memory of its own (about 35 MB of pinned Buffer pools otherwise, at 2,000 proxies).
      const value = unpooled(encodeEnvoyJson(r.typeUrl.slice(r.typeUrl.lastIndexOf('/') + 1), r.json, this.anyEncodings));
      e = { name: r.name, version: createHash('sha256').update(value).digest('base64url').slice(0, 16), value };
      this.encoded.set(r, e);
    }
    return e;
  }

  private schedule(): void {
    const now = Date.now();
    if (!this.timer) this.firstChangeAt = now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.opts.quietMs ?? 100, this.firstChangeAt + (this.opts.maxDelayMs ?? 1000) - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.push();
    }, wait);
    this.timer.unref?.();
  }

  /** Regenerates every proxy's configuration from the current snapshot and sends what changed. */
  private push(): void {
    const end = this.metrics.pushSeconds.startTimer();
    for (const p of this.proxies.values()) {
      try {
        const before = p.pushed;
        const after = this.generate(p);
        p.pushed = after;
        if (after === before) continue;
        const clustersChanged = changed(before?.clusters, after.clusters);
        const listenersChanged = changed(before?.listeners, after.listeners);
        for (const s of p.streams) {
          s.refresh([TYPE_URL.cluster]);
          s.refresh([TYPE_URL.endpoint], { force: clustersChanged });
          s.refresh([TYPE_URL.listener, TYPE_URL.route]);
          s.refresh([TYPE_URL.secret], { force: clustersChanged || listenersChanged });
        }
      } catch (err) {
        this.opts.logger.error('cannot push to a proxy', { node: p.node.id, error: errorMessage(err) });
      }
    }
    end();
  }
}

/** Whether a list of resources differs from the one before (the generator returns the same objects for the same content). */
function changed(before: readonly XdsResource[] | undefined, after: readonly XdsResource[]): boolean {
  return !before || before.length !== after.length || before.some((r, i) => r !== after[i]);
}

/** What a gRPC node subscribed to, across its streams (its generator answers exactly those names). */
function grpcNames(p: ProxyState, current: DiscoveryStream | undefined, typeUrl: string | undefined, sub: Subscription | undefined): GrpcResourceNames {
  const names: Record<'listeners' | 'clusters' | 'endpoints', Set<string>> = { listeners: new Set(), clusters: new Set(), endpoints: new Set() };
  const add = (t: string, s: Subscription) => {
    const k = KIND[t];
    if (s.wildcard || (k !== 'listeners' && k !== 'clusters' && k !== 'endpoints')) return;
    for (const n of s.names) names[k].add(n);
  };
  for (const s of p.streams) for (const [t, state] of s.state()) add(t, state.subscription);
  if (current && typeUrl && sub) add(typeUrl, sub);
  return { listeners: [...names.listeners], clusters: [...names.clusters], endpoints: [...names.endpoints] };
}

/**
 * The ProxyNode of an xDS node (/work/contracts/sidecar.md): node.id `sidecar~<ip>~<instance>` or
 * `grpc~<ip>~<instance>`, metadata CITADEL_*; the identity is the authenticated one, never the
 * metadata's (which, if present, must agree).
 */
export function proxyNodeOf(node: XdsNode, identity: WorkloadIdentity): ProxyNode {
  const meta = (k: string) => (typeof node.metadata[k] === 'string' ? (node.metadata[k] as string) : undefined);
  const marathonId = meta(META.marathonId);
  if (!marathonId) throw new StreamError(status.INVALID_ARGUMENT, `node ${node.id}: node.metadata.${META.marathonId} is missing; make the bootstrap with \`citadel envoy-bootstrap\` or \`citadel grpc-bootstrap\``);
  const claimed = meta(META.spiffeId);
  if (claimed && claimed !== spiffeId(identity)) throw new StreamError(status.PERMISSION_DENIED, `node ${node.id} claims ${claimed} but authenticated as ${spiffeId(identity)}`);
  const [prefix, ip = '', instance = ''] = node.id.split('~');
  const generator = meta(META.generator) === 'grpc' || prefix === 'grpc' ? 'grpc' : 'envoy';
  const certMode = meta(META.certMode) === 'files' ? 'files' : 'sds';
  const certsDir = certMode === 'files' ? meta(META.certsDir) : undefined;
  if (certsDir !== undefined && !isCleanAbsoluteDir(certsDir)) {
    throw new StreamError(status.INVALID_ARGUMENT, `node ${node.id}: node.metadata.${META.certsDir}: ${JSON.stringify(certsDir)} is not an absolute directory path; make the bootstrap with \`citadel envoy-bootstrap --certs-dir\``);
  }
  return {
    id: node.id || `${generator}~${ip}~${instance}`,
    generator,
    marathonId,
    identity,
    certMode,
    ...(certsDir !== undefined && { certsDir }),
    capture: meta(META.capture) === 'redirect' ? 'redirect' : 'explicit',
    instanceIp: ip || '127.0.0.1',
  };
}

/** `/a/b`: absolute, no empty, `.` or `..` segment, no control characters (it goes into file names Envoy opens). */
function isCleanAbsoluteDir(dir: string): boolean {
  if (!dir.startsWith('/') || /[\x00-\x1f\x7f]/.test(dir)) return false;
  return dir === '/' || dir.slice(1).split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}
