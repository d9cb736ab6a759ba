import type { Registry } from 'prom-client';
import { CertificateAuthority } from '../ca/authority';
import { IstioCAService, IstioCertificateService, NodeService } from '../api/ca-api';
import { CallContext, GrpcError, GrpcServer, ServerStream, status } from '../api/grpc/server';
import { Logger } from '../common/log';
import type { Store } from '../store/store';
import { CallerAuthenticator, Caller, NodeCaller, isNodeCaller } from './authn';
import { NodeAttestation } from './attestation';
import { serverMetrics, ServerMetrics } from './metrics';
import type { MonitoringServer, ReadinessCheck } from '../common/monitoring';
import { NO_PLACEMENTS, PlacementSource } from './placement';
import { PlacementFeed } from './placement-feed';
import { DEFAULT_RATE_LIMIT, RateLimiter, RateLimitOptions } from './rate-limit';
import { SecretFeed } from './secret-feed';
import { ServerCertificate } from './server-certificate';
import { CsrSigning } from './signing';

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
  /** Per-caller token bucket; `{ ratePerSecond: 0 }` disables it. */
  rateLimit?: RateLimitOptions;
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

/**
 * Starts the CA's gRPC API over TLS: Istio's IstioCertificateService (1.1+) and IstioCAService
 * (1.0), and our NodeService (join-token attestation, the node's secret and placement feeds).
 * Each concern is its own module: authn (who calls), placement (what a node may have), signing
 * (the CA's one path and its error mapping), attestation (join tokens), the feeds.
 */
export async function startCaGrpcServer(opts: CaGrpcServerOptions): Promise<CaGrpcServer> {
  const { ca, store, logger } = opts;
  const log = logger.child({ component: 'grpc' });
  const placements = opts.placements ?? NO_PLACEMENTS;
  const metrics = serverMetrics(opts.registry);
  const authn = new CallerAuthenticator(ca.trustDomain);
  const limiter = new RateLimiter(opts.rateLimit ?? DEFAULT_RATE_LIMIT);
  const serverCert = new ServerCertificate(ca, opts.hostIdentities ?? [], log, opts.serverCertTtlMs);
  const signing = new CsrSigning(ca, placements, metrics, log);
  const attestation = new NodeAttestation(ca.trustDomain, store, signing, metrics, log);
  const secretFeed = new SecretFeed(store, placements, log);
  secretFeed.start();
  const placementFeed = new PlacementFeed(placements);
  const gate = new CallerGate(authn, limiter, metrics);
  /** Open feed streams, ended on close so that shutdown does not wait for them. */
  const streams = new Set<ServerStream<unknown>>();
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
    maxMessageBytes: 64 * 1024,
    onError: (err, path) => log.error('gRPC request failed', { path, error: err.message }),
  });
  serverCert.onRenew((tls) => server.setSecureContext(tls));

  server.unary(IstioCertificateService.CreateCertificate, (req, ctx) => {
    metrics.csrCount.inc();
    const issued = signing.sign(gate.caller(ctx), req.csr, req.validityDuration * 1000);
    return { certChain: [issued.certPem, ...issued.intermediatePems, issued.rootCertPem] };
  });

  server.unary(IstioCAService.HandleCSR, (req, ctx) => {
    metrics.csrCount.inc();
    const issued = signing.sign(gate.caller(ctx), req.csrPem, req.requestedTtlMinutes * 60_000);
    return {
      isApproved: true,
      status: { code: status.OK, message: '' },
      signedCert: Buffer.from(issued.certPem),
      certChain: Buffer.from(issued.intermediatePems.join('')),
    };
  });

  server.unary(NodeService.AttestNode, async (req, ctx) => {
    gate.limit(`attest:${ctx.peerAddress}`);
    const issued = await attestation.attest(req, ctx.peerAddress);
    return { certChain: [issued.certPem, ...issued.intermediatePems, issued.rootCertPem] };
  });

  /** A node's feed stream: lives while the node certificate does (the agent renews and reconnects). */
  const nodeStream = <T>(ctx: CallContext, out: ServerStream<T>, what: string, subscribe: (host: string) => () => void) => {
    const caller = gate.node(ctx);
    const host = caller.identity.host;
    const stop = subscribe(host);
    const expiry = setTimeout(() => {
      stop();
      out.end(new GrpcError(status.UNAUTHENTICATED, `the node certificate of ${host} expired; renew it and reconnect`));
    }, Math.min(2 ** 31 - 1, Math.max(0, caller.notAfter.getTime() - Date.now())));
    streams.add(out as ServerStream<unknown>);
    countFeed(host, 1);
    out.onClose(() => {
      clearTimeout(expiry);
      stop();
      streams.delete(out as ServerStream<unknown>);
      countFeed(host, -1);
    });
    log.info(`node connected to the ${what} feed`, { host });
  };

  server.serverStreaming(NodeService.WatchSecrets, (_req, ctx, out) => nodeStream(ctx, out, 'secret', (host) => secretFeed.subscribe(host, (u) => out.write(u))));
  server.serverStreaming(NodeService.WatchPlacements, (_req, ctx, out) => nodeStream(ctx, out, 'placement', (host) => placementFeed.subscribe(host, (u) => out.write(u))));

  const host = opts.host ?? '0.0.0.0';
  let port: number;
  try {
    port = await server.listen(opts.port, host);
  } catch (err) {
    serverCert.stop();
    secretFeed.stop();
    placementFeed.stop();
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
      for (const out of [...streams]) out.end(new GrpcError(status.UNAVAILABLE, 'the CA is shutting down; reconnect'));
      await server.close();
    },
  };
}

/** Authentication and rate limiting of every call that needs a caller. */
class CallerGate {
  constructor(
    private readonly authn: CallerAuthenticator,
    private readonly limiter: RateLimiter,
    private readonly metrics: ServerMetrics,
  ) {}

  /** The authenticated caller, rate-limited; throws a GrpcError. */
  caller(ctx: CallContext): Caller {
    const result = this.authn.authenticate(ctx);
    if (!result.ok) {
      if (result.reason === 'id-extraction') this.metrics.idExtractionErrCount.inc();
      else this.metrics.authenticationFailureCount.inc();
      throw new GrpcError(status.UNAUTHENTICATED, result.message);
    }
    this.limit(result.caller.spiffeId);
    return result.caller;
  }

  node(ctx: CallContext): NodeCaller {
    const caller = this.caller(ctx);
    if (!isNodeCaller(caller)) {
      throw new GrpcError(status.PERMISSION_DENIED, `${caller.spiffeId} is not a node; the node feeds are for Mesos agent node certificates (spiffe://<td>/mesos-agent/<host>)`);
    }
    return caller;
  }

  limit(key: string): void {
    if (!this.limiter.take(key)) {
      this.metrics.rateLimitedCount.inc();
      throw new GrpcError(status.RESOURCE_EXHAUSTED, `too many requests from ${key}; slow down and retry with backoff`);
    }
  }
}
