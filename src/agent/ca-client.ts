import * as grpc from '@grpc/grpc-js';
import {
  AttestNodeResponse, CsrResponse, IstioCAService, IstioCertificateResponse, IstioCertificateService, NodeService, SecretsUpdate,
} from '../server/api';

export interface CaClientOptions {
  /** host:port of the CA's gRPC API. */
  address: string;
  /** The Citadel root the server certificate must chain to. */
  rootCertPem: string;
  /** Our certificate (leaf first, then chain) and key; absent before node attestation. */
  certChainPem?: string;
  keyPem?: string;
  /** The name checked in the server certificate (Citadel's: istio-ca). */
  serverName?: string;
}

const ServiceClients = {
  istio: grpc.makeGenericClientConstructor(IstioCertificateService, 'IstioCertificateService'),
  istio10: grpc.makeGenericClientConstructor(IstioCAService, 'IstioCAService'),
  node: grpc.makeGenericClientConstructor(NodeService, 'NodeService'),
};

/** A gRPC client of the CA, over TLS, presenting a client certificate when it has one. */
export class CaClient {
  private readonly channel: grpc.Channel;
  private readonly istio: grpc.Client;
  private readonly istio10: grpc.Client;
  private readonly node: grpc.Client;

  constructor(readonly opts: CaClientOptions) {
    const creds = grpc.credentials.createSsl(
      Buffer.from(opts.rootCertPem),
      opts.keyPem ? Buffer.from(opts.keyPem) : null,
      opts.certChainPem ? Buffer.from(opts.certChainPem) : null,
    );
    const serverName = opts.serverName ?? 'istio-ca';
    this.channel = new grpc.Channel(opts.address, creds, {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.use_local_subchannel_pool': 1,
    });
    const channelOverride = this.channel;
    this.istio = new ServiceClients.istio(opts.address, creds, { channelOverride });
    this.istio10 = new ServiceClients.istio10(opts.address, creds, { channelOverride });
    this.node = new ServiceClients.node(opts.address, creds, { channelOverride });
  }

  /** IstioCertificateService/CreateCertificate: the chain, leaf first and root last. */
  createCertificate(csr: string, validitySeconds = 0, deadlineMs = 10_000): Promise<string[]> {
    return this.unary<IstioCertificateResponse>(this.istio, 'CreateCertificate', { csr, subjectId: '', validityDuration: validitySeconds }, deadlineMs).then((r) => r.certChain);
  }

  /** IstioCAService/HandleCSR (Istio 1.0). */
  handleCsr(csrPem: string, ttlMinutes = 0, deadlineMs = 10_000): Promise<CsrResponse> {
    return this.unary<CsrResponse>(this.istio10, 'HandleCSR', { csrPem: Buffer.from(csrPem), requestedTtlMinutes: ttlMinutes }, deadlineMs);
  }

  /** NodeService/AttestNode: a join token for a node certificate chain, leaf first. */
  attestNode(joinToken: string, host: string, csr: string, validitySeconds = 0, deadlineMs = 10_000): Promise<string[]> {
    return this.unary<AttestNodeResponse>(this.node, 'AttestNode', { joinToken, host, csr, validityDuration: validitySeconds }, deadlineMs).then((r) => r.certChain);
  }

  /** NodeService/WatchSecrets: the node's secret feed. */
  watchSecrets(): grpc.ClientReadableStream<SecretsUpdate> {
    return (this.node as unknown as { WatchSecrets(req: object): grpc.ClientReadableStream<SecretsUpdate> }).WatchSecrets({});
  }

  close(): void {
    this.istio.close();
    this.istio10.close();
    this.node.close();
    this.channel.close();
  }

  private unary<T>(client: grpc.Client, method: string, request: object, deadlineMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      (client as unknown as Record<string, (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[method](
        request,
        { deadline: Date.now() + deadlineMs },
        (err, res) => (err ? reject(err) : resolve(res)),
      );
    });
  }
}
