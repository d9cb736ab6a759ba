import type { Registry } from 'prom-client';
import { CertificateAuthority, IssuedCertificate, SigningError } from '../ca/authority';
import { Logger } from '../common/log';
import type { MarathonView } from '../marathon/view';
import { CsrError, parseAndValidateCsr } from '../pki/csr';
import { Identity, nodeIdentity, parseSpiffeId, spiffeId } from '../pki/identity';
import type { Store } from '../store/store';
import type { AttestNodeRequest } from './api';
import { IstioCAService, IstioCertificateService, NodeService, SecretsUpdate } from './api';
import { Caller, CallerAuthenticator } from './caller';
import { CallContext, GrpcError, GrpcHttp2Server, ServerStreamWriter, status } from './grpc-transport';
import { hashJoinToken } from './join-token';
import { serverMetrics, ServerMetrics } from './metrics';
import type { MonitoringServer, ReadinessCheck } from './monitoring';
import { DEFAULT_RATE_LIMIT, RateLimiter, RateLimitOptions } from './rate-limit';
import { SecretFeed } from './secret-feed';
import { ServerCertificate } from './server-certificate';

export interface CaGrpcServerOptions {
  ca: CertificateAuthority;
  store: Store;
  /** Marathon's placement of tasks on hosts; without it, nodes are entitled to no workload identity. */
  view: MarathonView | undefined;
  /** `--grpc-port` (8060); 0 picks a free port. */
  port: number;
  host?: string;
  /** `--grpc-host-identities`: extra DNS names or IPs in the server certificate. */
  hostIdentities?: string[];
  logger: Logger;
  registry: Registry;
  /** Per-caller token bucket; `{ ratePerSecond: 0 }` disables it. */
  rateLimit?: RateLimitOptions;
  /** When given, /healthz also waits for the gRPC server (listening, certificate valid, feed loaded). */
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
 * (1.0), and our NodeService (join-token attestation, the node's secret feed).
 */
export async function startCaGrpcServer(opts: CaGrpcServerOptions): Promise<CaGrpcServer> {
  const { ca, store, view, logger } = opts;
  const log = logger.child({ component: 'grpc' });
  const metrics = serverMetrics(opts.registry);
  const authn = new CallerAuthenticator(ca.trustDomain);
  const limiter = new RateLimiter(opts.rateLimit ?? DEFAULT_RATE_LIMIT);
  const serverCert = new ServerCertificate(ca, opts.hostIdentities ?? [], log, opts.serverCertTtlMs);
  const feed = new SecretFeed(store, view, log);
  feed.start().catch(() => undefined); // logged by the feed; /healthz stays not ready
  const signer = new Signer(ca, view, authn, limiter, metrics, log);
  /** Open feed streams, ended on close so that shutdown does not wait for them. */
  const streams = new Set<ServerStreamWriter<SecretsUpdate>>();

  const server = new GrpcHttp2Server({
    tls: serverCert.tls,
    maxMessageBytes: 64 * 1024,
    onError: (err, path) => log.error('gRPC request failed', { path, error: err.message }),
  });
  serverCert.onRenew((tls) => server.setSecureContext(tls));

  server.unary(IstioCertificateService.CreateCertificate, (req, ctx) => {
    const issued = signer.sign(ctx, req.csr, req.validityDuration * 1000);
    return { certChain: [issued.certPem, ...issued.intermediatePems, issued.rootCertPem] };
  });

  server.unary(IstioCAService.HandleCSR, (req, ctx) => {
    const issued = signer.sign(ctx, req.csrPem, req.requestedTtlMinutes * 60_000);
    return {
      isApproved: true,
      status: { code: status.OK, message: '' },
      signedCert: Buffer.from(issued.certPem),
      certChain: Buffer.from(issued.intermediatePems.join('')),
    };
  });

  server.unary(NodeService.AttestNode, async (req, ctx) => {
    const issued = await signer.attest(req, ctx, store);
    return { certChain: [issued.certPem, ...issued.intermediatePems, issued.rootCertPem] };
  });

  server.serverStreaming(NodeService.WatchSecrets, (_req, ctx, out) => {
    const caller = signer.node(ctx);
    const host = (caller.identity as { host: string }).host;
    const stop = feed.subscribe(host, (u) => out.write(u));
    // The feed is as good as the node's certificate: end it when that expires (the agent renews and reconnects).
    const expiry = setTimeout(() => {
      stop();
      out.end(new GrpcError(status.UNAUTHENTICATED, `the node certificate of ${host} expired; renew it and reconnect`));
    }, Math.min(2 ** 31 - 1, Math.max(0, caller.notAfter.getTime() - Date.now())));
    streams.add(out);
    out.onClose(() => {
      clearTimeout(expiry);
      stop();
      streams.delete(out);
    });
    log.info('node connected to the secret feed', { host });
  });

  const host = opts.host ?? '0.0.0.0';
  let port: number;
  try {
    port = await server.listen(opts.port, host);
  } catch (err) {
    serverCert.stop();
    feed.stop();
    throw new Error(`cannot listen for gRPC on ${host}:${opts.port}: ${(err as Error).message}`);
  }
  log.info('gRPC CA listening', { port, services: ['istio.v1.auth.IstioCertificateService', 'istio.v1.auth.IstioCAService', 'citadel.v1.NodeService'] });

  let closed = false;
  const readiness: ReadinessCheck = {
    name: 'grpc',
    check: () =>
      closed ? 'the gRPC server is closed'
      : serverCert.notAfter.getTime() <= Date.now() ? 'the gRPC server certificate has expired'
      : !feed.ready ? 'the secret feed has not started'
      : undefined,
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
      feed.stop();
      for (const out of [...streams]) out.end(new GrpcError(status.UNAVAILABLE, 'the CA is shutting down; reconnect'));
      await server.close();
    },
  };
}

/** Authentication, authorization, rate limiting and signing for the three signing RPCs. */
class Signer {
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly view: MarathonView | undefined,
    private readonly authn: CallerAuthenticator,
    private readonly limiter: RateLimiter,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
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

  node(ctx: CallContext): Caller {
    const caller = this.caller(ctx);
    if (caller.identity.kind !== 'node') {
      throw new GrpcError(status.PERMISSION_DENIED, `${caller.spiffeId} is not a node; the secret feed is for Mesos agent node certificates (spiffe://<td>/mesos-agent/<host>)`);
    }
    return caller;
  }

  limit(key: string): void {
    if (!this.limiter.take(key)) {
      this.metrics.rateLimitedCount.inc();
      throw new GrpcError(status.RESOURCE_EXHAUSTED, `too many requests from ${key}; slow down and retry with backoff`);
    }
  }

  /**
   * CreateCertificate and HandleCSR. A workload (or node) renews its own identity; a node may
   * also obtain the identities Marathon places on its host right now. The SAN comes from that
   * authorised identity; the CSR must name exactly it.
   */
  sign(ctx: CallContext, csr: string | Buffer, requestedTtlMs: number): IssuedCertificate {
    this.metrics.csrCount.inc();
    const caller = this.caller(ctx);
    let parsed;
    try {
      parsed = parseAndValidateCsr(csr);
    } catch (err) {
      throw this.csrRefusal(err);
    }
    const target = this.authorise(caller, parsed.uris);
    const id = spiffeId(target);
    if (parsed.uris.length !== 1 || parsed.uris[0] !== id) {
      throw this.csrRefusal(new CsrError('identity', `CSR asks for ${parsed.uris.join(', ') || 'no URI SAN'}; it must name exactly ${id}`));
    }
    return this.issue(parsed.spki, id, requestedTtlMs);
  }

  /** Which identity the caller may have signed, given what its CSR asks for. */
  private authorise(caller: Caller, uris: string[]): Identity {
    if (uris.length !== 1 || uris[0] === caller.spiffeId || caller.identity.kind !== 'node') return caller.identity;
    let wanted: Identity;
    try {
      wanted = parseSpiffeId(uris[0]);
    } catch (err) {
      this.metrics.idExtractionErrCount.inc();
      throw new GrpcError(status.INVALID_ARGUMENT, `CSR URI SAN: ${(err as Error).message}`);
    }
    const host = caller.identity.host;
    if (wanted.kind !== 'workload' || wanted.trustDomain !== this.ca.trustDomain) {
      throw new GrpcError(status.PERMISSION_DENIED, `node ${host} may obtain only workload identities of trust domain ${this.ca.trustDomain} placed on it, not ${uris[0]}`);
    }
    const placed = this.view?.hostsOf(wanted.namespace, wanted.serviceAccount).has(host) ?? false;
    if (!placed) {
      this.log.warn('node asked for an identity not placed on it', { host, identity: uris[0] });
      throw new GrpcError(status.PERMISSION_DENIED, `Marathon places no task of ${uris[0]} on host ${host}; a node may obtain only the identities running on it`);
    }
    return wanted;
  }

  private issue(spki: Buffer, id: string, requestedTtlMs: number): IssuedCertificate {
    try {
      const issued = this.ca.issue(spki, id, this.ca.resolveTtl(requestedTtlMs));
      this.metrics.successCertIssuanceCount.inc();
      return issued;
    } catch (err) {
      if (err instanceof SigningError) {
        this.metrics.csrSignErrCount.inc({ error: err.code });
        const code = err.code === 'TTL_ERROR' ? status.INVALID_ARGUMENT : err.code === 'CA_NOT_READY' ? status.UNAVAILABLE : status.INTERNAL;
        throw new GrpcError(code, err.message);
      }
      throw err;
    }
  }

  private csrRefusal(err: unknown): GrpcError {
    if (!(err instanceof CsrError)) return new GrpcError(status.INTERNAL, (err as Error).message);
    if (err.rule === 'identity') {
      this.metrics.csrSignErrCount.inc({ error: 'CSR_ERROR' });
      return new GrpcError(status.PERMISSION_DENIED, err.message);
    }
    this.metrics.csrParsingErrCount.inc();
    return new GrpcError(status.INVALID_ARGUMENT, `CSR refused (${err.rule}): ${err.message}`);
  }

  /** AttestNode: a one-time join token for this host -> a node certificate. */
  async attest(req: AttestNodeRequest, ctx: CallContext, store: Store): Promise<IssuedCertificate> {
    const peer = ctx.peerAddress;
    this.limit(`attest:${peer}`);
    const { joinToken, host, csr, validityDuration } = req;
    let node: Identity;
    try {
      node = nodeIdentity(this.ca.trustDomain, host);
    } catch (err) {
      throw new GrpcError(status.INVALID_ARGUMENT, (err as Error).message);
    }
    if (!joinToken) throw new GrpcError(status.UNAUTHENTICATED, 'no join token; create one with `citadel token create --host <host>`');
    let parsed;
    try {
      parsed = parseAndValidateCsr(csr, [spiffeId(node)]);
    } catch (err) {
      this.metrics.nodeAttestationCount.inc({ result: 'bad_csr' });
      throw this.csrRefusal(err);
    }
    // Consumed before any other check: a token is spent by its first use, right or wrong.
    const record = await store.consumeJoinToken(hashJoinToken(joinToken));
    const refuse = (result: string, code: status, message: string) => {
      this.metrics.nodeAttestationCount.inc({ result });
      this.metrics.authenticationFailureCount.inc();
      this.log.warn('node attestation refused', { host, peer, reason: message });
      return new GrpcError(code, message);
    };
    if (!record) throw refuse('unknown_token', status.UNAUTHENTICATED, 'the join token is unknown or was already used; create a new one with `citadel token create --host <host>`');
    if (Date.parse(record.expiresAt) <= Date.now()) throw refuse('expired_token', status.UNAUTHENTICATED, `the join token expired at ${record.expiresAt}; create a new one`);
    if (record.host !== host) throw refuse('wrong_host', status.PERMISSION_DENIED, `the join token was created for host ${record.host}, not ${host}; it is now spent`);
    const issued = this.issue(parsed.spki, spiffeId(node), validityDuration * 1000);
    this.metrics.nodeAttestationCount.inc({ result: 'ok' });
    this.log.info('node attested', { host, peer, notAfter: issued.notAfter.toISOString() });
    return issued;
  }
}
