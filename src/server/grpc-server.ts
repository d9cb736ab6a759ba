import type { Registry } from 'prom-client';
import { CertificateAuthority, IssuedCertificate } from '../ca/authority';
import { AuditApi, certificateTime, IssuanceAudit, NO_AUDIT } from '../ca/audit-log';
import { CsrResponse, IstioCAService, IstioCertificateService, NodeService } from '../api/ca-api';
import { CallContext, GrpcError, GrpcServer, GrpcServerOptions, ServerStream, status } from '../api/grpc/server';
import { Logger } from '../common/log';
import type { Store } from '../store/store';
import { CallerAuthenticator, Caller, NodeCaller, isNodeCaller } from './authn';
import { NodeAttestation } from './attestation';
import { evictedMessage, NodeEvictions } from './evictions';
import { hashJoinToken } from './join-token';
import { serverMetrics, ServerMetrics } from './metrics';
import type { MonitoringServer, ReadinessCheck } from '../common/monitoring';
import { NodeTracker } from './node-tracker';
import { NO_PLACEMENTS, PlacementSource } from './placement';
import { PlacementFeed } from './placement-feed';
import { DEFAULT_RATE_LIMIT, RateLimiter, RateLimitOptions } from './rate-limit';
import { SecretFeed } from './secret-feed';
import { ServerCertificate } from './server-certificate';
import { CsrSigning } from './signing';

/** Largest gRPC message the CA accepts: a CSR is about 1 KB (RSA 4096 is under 2 KB). */
export const CA_MAX_MESSAGE_BYTES = 64 * 1024;
/** `--max-concurrent-streams`: HTTP/2 streams per connection. */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 1000;

export interface CaGrpcServerOptions {
  ca: CertificateAuthority;
  store: Store;
  /** Marathon's placement of tasks on hosts; without it, nodes are entitled to no workload identity. */
  placements?: PlacementSource;
  /** `--grpc-port` (8060); 0 picks a free port. */
  port: number;
  host?: string;
  /** `--grpc-host-identities`: extra DNS names or IPs in the server certificate. */
  hostIdentities?: string[];
  logger: Logger;
  registry: Registry;
  /** `--csr-rate-limit` / `--csr-burst`: the per-caller token bucket; `{ ratePerSecond: 0 }` disables it. */
  rateLimit?: RateLimitOptions;
  /** `--max-concurrent-streams`, advertised in HTTP/2 SETTINGS (default 1000). */
  maxConcurrentStreams?: number;
  /** The transport's timeouts (tests shorten them). */
  timeouts?: Pick<GrpcServerOptions, 'requestTimeoutMs' | 'handshakeTimeoutMs' | 'idleConnectionTimeoutMs'>;
  /** `--audit-log`: hears every certificate issued and every refusal. */
  audit?: IssuanceAudit;
  /** When given, /healthz also waits for the gRPC server (listening, certificate valid). */
  monitoring?: MonitoringServer;
  /** Lifetime of the server's own certificate (default: the workload certificate TTL). */
  serverCertTtlMs?: number;
}

export interface CaGrpcServer {
  port: number;
  serverCertificate: ServerCertificate;
  readiness: ReadinessCheck;
  close(): Promise<void>;
}

/** Refusals of a CSR itself: Istio 1.0's HandleCSR answers them with `is_approved: false` and a status. */
const CSR_REFUSALS: ReadonlySet<status> = new Set([status.INVALID_ARGUMENT, status.PERMISSION_DENIED]);

/**
 * Starts the CA's gRPC API over TLS: Istio's IstioCertificateService (1.1+) and IstioCAService
 * (1.0), and our NodeService (join-token attestation, the node's secret and placement feeds).
 * Each concern is its own module: authn (who calls), evictions (nodes refused), placement (what
 * a node may have), signing (the CA's one path and its error mapping), attestation (join tokens),
 * the feeds, the node tracker (`citadel node list`) and the audit log.
 */
export async function startCaGrpcServer(opts: CaGrpcServerOptions): Promise<CaGrpcServer> {
  const { ca, store, logger } = opts;
  const log = logger.child({ component: 'grpc' });
  const placements = opts.placements ?? NO_PLACEMENTS;
  const audit = opts.audit ?? NO_AUDIT;
  const metrics = serverMetrics(opts.registry);
  const authn = new CallerAuthenticator(ca.trustDomain);
  const evictions = await NodeEvictions.start(store, ca.config.clockSkewMs, log);
  const tracker = new NodeTracker(store, log);
  const rateLimit = opts.rateLimit ?? DEFAULT_RATE_LIMIT;
  const gate = new CallerGate(authn, new RateLimiter(rateLimit), rateLimit, evictions, tracker, ca.config.clockSkewMs, metrics);
  const serverCert = new ServerCertificate(ca, opts.hostIdentities ?? [], log, opts.serverCertTtlMs);
  const signing = new CsrSigning(ca, placements, metrics, log);
  const attestation = new NodeAttestation(ca.trustDomain, store, signing, metrics, log, evictions);
  const secretFeed = new SecretFeed(store, placements, log);
  secretFeed.start();
  const placementFeed = new PlacementFeed(placements);
  /** Open feed streams by host, ended on close so that shutdown does not wait for them, or on the host's eviction. */
  const streams = new Map<ServerStream<unknown>, { host: string; notBefore: Date }>();
  const issuedAt = (issued: IssuedCertificate) => new Date(issued.notBefore.getTime() + ca.config.clockSkewMs);
  /** host -> open feed streams: what citadel_server_connected_nodes counts. */
  const feedsByHost = new Map<string, number>();
  const countFeed = (host: string, d: 1 | -1) => {
    const n = (feedsByHost.get(host) ?? 0) + d;
    if (n > 0) feedsByHost.set(host, n);
    else feedsByHost.delete(host);
    metrics.connectedNodes.set(feedsByHost.size);
  };

  const server = new GrpcServer({
    tls: serverCert.tls,
    maxMessageBytes: CA_MAX_MESSAGE_BYTES,
    maxConcurrentStreams: opts.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
    ...opts.timeouts,
    onError: (err, path) => log.error('gRPC request failed', { path, error: err.message }),
  });
  serverCert.onRenew((tls) => server.setSecureContext(tls));

  const refused = (api: AuditApi, ctx: CallContext, caller: string, node: string | undefined, err: unknown) => {
    const e = err instanceof GrpcError ? err : new GrpcError(status.INTERNAL, (err as Error)?.message ?? String(err));
    audit.record({ event: 'refused', api, caller, node, peer: ctx.peerAddress, code: status[e.code] ?? String(e.code), reason: e.message });
  };

  /** A refusal by the gate, naming the caller when it was authenticated (evicted, rate-limited). */
  const refusedAtGate = (api: AuditApi, ctx: CallContext, err: unknown) => {
    const who = authn.authenticate(ctx);
    refused(api, ctx, who.ok ? who.caller.spiffeId : 'unauthenticated', who.ok && isNodeCaller(who.caller) ? who.caller.identity.host : undefined, err);
  };

  /** The authenticated caller, or a refusal recorded in the audit log. */
  const callerOf = (api: AuditApi, ctx: CallContext): Caller => {
    try {
      return gate.caller(ctx);
    } catch (err) {
      refusedAtGate(api, ctx, err);
      throw err;
    }
  };

  /** Signs for an authenticated caller; records what was issued or why not. */
  const signFor = (api: AuditApi, ctx: CallContext, caller: Caller, csr: string | Buffer, ttlMs: number): IssuedCertificate => {
    const node = isNodeCaller(caller) ? caller.identity.host : undefined;
    try {
      const issued = signing.sign(caller, csr, ttlMs);
      audit.record({ event: 'issued', api, caller: caller.spiffeId, node, peer: ctx.peerAddress, spiffeId: issued.spiffeId ?? '', serial: issued.serialHex, notAfter: certificateTime(issued.notAfter) });
      if (node && issued.spiffeId === caller.spiffeId) tracker.issued(node, { serialHex: issued.serialHex, issuedAt: issuedAt(issued), notAfter: issued.notAfter });
      return issued;
    } catch (err) {
      refused(api, ctx, caller.spiffeId, node, err);
      throw err;
    }
  };

  server.unary(IstioCertificateService.CreateCertificate, (req, ctx) => {
    metrics.csrCount.inc();
    const issued = signFor('CreateCertificate', ctx, callerOf('CreateCertificate', ctx), req.csr, req.validityDuration * 1000);
    return { certChain: [issued.certPem, ...issued.intermediatePems, issued.rootCertPem] };
  });

  server.unary(IstioCAService.HandleCSR, (req, ctx): CsrResponse => {
    metrics.csrCount.inc();
    // Who is calling and how often are the transport's business (gRPC statuses); a CSR the CA
    // will not sign is answered as Istio 1.0 did, is_approved false with the reason in status.
    const caller = callerOf('HandleCSR', ctx);
    try {
      const issued = signFor('HandleCSR', ctx, caller, req.csrPem, req.requestedTtlMinutes * 60_000);
      return { isApproved: true, status: { code: status.OK, message: '' }, signedCert: Buffer.from(issued.certPem), certChain: Buffer.from(issued.intermediatePems.join('')) };
    } catch (err) {
      if (err instanceof GrpcError && CSR_REFUSALS.has(err.code)) return { isApproved: false, status: { code: err.code, message: err.message }, signedCert: Buffer.alloc(0), certChain: Buffer.alloc(0) };
      throw err;
    }
  });

  server.unary(NodeService.AttestNode, async (req, ctx) => {
    const caller = req.joinToken ? `join-token:${hashJoinToken(req.joinToken).slice(0, 12)}` : 'no-join-token';
    try {
      gate.limit(`attest:${ctx.peerAddress}`, 'per peer address');
      const issued = await attestation.attest(req, ctx.peerAddress);
      audit.record({ event: 'issued', api: 'AttestNode', caller, node: req.host, peer: ctx.peerAddress, spiffeId: issued.spiffeId ?? '', serial: issued.serialHex, notAfter: certificateTime(issued.notAfter) });
      tracker.issued(req.host, { serialHex: issued.serialHex, issuedAt: issuedAt(issued), notAfter: issued.notAfter });
      return { certChain: [issued.certPem, ...issued.intermediatePems, issued.rootCertPem] };
    } catch (err) {
      refused('AttestNode', ctx, caller, req.host || undefined, err);
      throw err;
    }
  });

  /** A node's feed stream: lives while the node certificate does (the agent renews and reconnects), or until the node is evicted. */
  const nodeStream = <T>(api: 'WatchSecrets' | 'WatchPlacements', ctx: CallContext, out: ServerStream<T>, what: string, subscribe: (host: string) => () => void) => {
    let caller: NodeCaller;
    try {
      caller = gate.node(ctx);
    } catch (err) {
      refusedAtGate(api, ctx, err);
      throw err;
    }
    const host = caller.identity.host;
    const stop = subscribe(host);
    const expiry = setTimeout(() => {
      stop();
      out.end(new GrpcError(status.UNAUTHENTICATED, `the node certificate of ${host} expired; renew it and reconnect`));
    }, Math.min(2 ** 31 - 1, Math.max(0, caller.notAfter.getTime() - Date.now())));
    streams.set(out as ServerStream<unknown>, { host, notBefore: caller.notBefore });
    countFeed(host, 1);
    out.onClose(() => {
      clearTimeout(expiry);
      stop();
      streams.delete(out as ServerStream<unknown>);
      countFeed(host, -1);
    });
    log.info(`node connected to the ${what} feed`, { host });
  };

  server.serverStreaming(NodeService.WatchSecrets, (_req, ctx, out) => nodeStream('WatchSecrets', ctx, out, 'secret', (host) => secretFeed.subscribe(host, (u) => out.write(u))));
  server.serverStreaming(NodeService.WatchPlacements, (_req, ctx, out) => nodeStream('WatchPlacements', ctx, out, 'placement', (host) => placementFeed.subscribe(host, (u) => out.write(u))));

  // An eviction closes the host's feeds at once (the calls that follow are refused by the gate).
  const stopEvictions = evictions.onEvicted((e) => {
    for (const [out, s] of [...streams]) {
      if (s.host !== e.host || !evictions.refusing(s.host, s.notBefore)) continue;
      out.end(new GrpcError(status.PERMISSION_DENIED, evictedMessage(e)));
      log.info('closed the feed of an evicted node', { host: s.host });
    }
  });

  const host = opts.host ?? '0.0.0.0';
  let port: number;
  try {
    port = await server.listen(opts.port, host);
  } catch (err) {
    serverCert.stop();
    secretFeed.stop();
    placementFeed.stop();
    stopEvictions();
    evictions.stop();
    throw new Error(`cannot listen for gRPC on ${host}:${opts.port}: ${(err as Error).message}`);
  }
  log.info('gRPC CA listening', { port, services: ['istio.v1.auth.IstioCertificateService', 'istio.v1.auth.IstioCAService', 'citadel.v1.NodeService'] });

  let closed = false;
  const readiness: ReadinessCheck = {
    name: 'grpc',
    check: () => (closed ? 'the gRPC server is closed' : serverCert.notAfter.getTime() <= Date.now() ? 'the gRPC server certificate has expired' : undefined),
  };
  opts.monitoring?.addReadinessCheck(readiness);

  return {
    port,
    serverCertificate: serverCert,
    readiness,
    close: async () => {
      if (closed) return;
      closed = true;
      serverCert.stop();
      secretFeed.stop();
      placementFeed.stop();
      stopEvictions();
      evictions.stop();
      for (const out of [...streams.keys()]) out.end(new GrpcError(status.UNAVAILABLE, 'the CA is shutting down; reconnect'));
      await server.close();
    },
  };
}

/** Authentication, eviction and rate limiting of every call that needs a caller. */
class CallerGate {
  constructor(
    private readonly authn: CallerAuthenticator,
    private readonly limiter: RateLimiter,
    private readonly rateLimit: RateLimitOptions,
    private readonly evictions: NodeEvictions,
    private readonly tracker: NodeTracker,
    private readonly clockSkewMs: number,
    private readonly metrics: ServerMetrics,
  ) {}

  /** The authenticated caller, not evicted, rate-limited; throws a GrpcError. */
  caller(ctx: CallContext): Caller {
    const result = this.authn.authenticate(ctx);
    if (!result.ok) {
      if (result.reason === 'id-extraction') this.metrics.idExtractionErrCount.inc();
      else this.metrics.authenticationFailureCount.inc();
      throw new GrpcError(status.UNAUTHENTICATED, result.message);
    }
    const caller = result.caller;
    if (isNodeCaller(caller)) {
      const eviction = this.evictions.refusing(caller.identity.host, caller.notBefore);
      if (eviction) {
        this.metrics.authenticationFailureCount.inc();
        throw new GrpcError(status.PERMISSION_DENIED, evictedMessage(eviction));
      }
      this.tracker.contact(caller.identity.host, { serialHex: caller.serialHex, issuedAt: new Date(caller.notBefore.getTime() + this.clockSkewMs), notAfter: caller.notAfter });
    }
    this.limit(caller.spiffeId, 'per caller');
    return caller;
  }

  node(ctx: CallContext): NodeCaller {
    const caller = this.caller(ctx);
    if (!isNodeCaller(caller)) {
      throw new GrpcError(status.PERMISSION_DENIED, `${caller.spiffeId} is not a node; the node feeds are for Mesos agent node certificates (spiffe://<td>/mesos-agent/<host>)`);
    }
    return caller;
  }

  /** Takes a token from `key`'s bucket; RESOURCE_EXHAUSTED naming the limit when it is empty. */
  limit(key: string, scope: string): void {
    if (!this.limiter.take(key)) {
      this.metrics.rateLimitedCount.inc();
      const { ratePerSecond, burst } = this.rateLimit;
      throw new GrpcError(status.RESOURCE_EXHAUSTED, `rate limit exceeded for ${key}: ${ratePerSecond} requests/s with a burst of ${burst} ${scope} (--csr-rate-limit, --csr-burst); slow down and retry with backoff`);
    }
  }
}
