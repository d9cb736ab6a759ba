import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { splitCertificates } from '../pki/pem';
import {
  AttestNodeResponse, CsrResponse, IstioCAService, IstioCertificateResponse, IstioCertificateService, NodeService, PlacementsUpdate, SecretsUpdate,
} from '../api/ca-api';

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

/** A gRPC client of the CA, over TLS, presenting a client certificate when it has one. */
export class CaClient {
  private readonly channel: grpc.Channel;
  private readonly client: grpc.Client;

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
    this.client = new grpc.Client(opts.address, creds, { channelOverride: this.channel });
  }

  /** IstioCertificateService/CreateCertificate: the chain, leaf first and root last. */
  createCertificate(csr: string, validitySeconds = 0, deadlineMs = 10_000): Promise<string[]> {
    return this.unary(IstioCertificateService.CreateCertificate, { csr, subjectId: '', validityDuration: validitySeconds }, deadlineMs).then((r: IstioCertificateResponse) => r.certChain);
  }

  /** IstioCAService/HandleCSR (Istio 1.0). */
  handleCsr(csrPem: string, ttlMinutes = 0, deadlineMs = 10_000): Promise<CsrResponse> {
    return this.unary(IstioCAService.HandleCSR, { csrPem: Buffer.from(csrPem), nodeAgentCredential: Buffer.alloc(0), credentialType: '', requestedTtlMinutes: ttlMinutes }, deadlineMs);
  }

  /** NodeService/AttestNode: a join token for a node certificate chain, leaf first. */
  attestNode(joinToken: string, host: string, csr: string, validitySeconds = 0, deadlineMs = 10_000): Promise<string[]> {
    return this.unary(NodeService.AttestNode, { joinToken, host, csr, validityDuration: validitySeconds }, deadlineMs).then((r: AttestNodeResponse) => r.certChain);
  }

  /** NodeService/WatchSecrets: the node's secret feed (file mode). */
  watchSecrets(): grpc.ClientReadableStream<SecretsUpdate> {
    return this.client.makeServerStreamRequest(NodeService.WatchSecrets.path, NodeService.WatchSecrets.requestSerialize, NodeService.WatchSecrets.responseDeserialize, {});
  }

  /** NodeService/WatchPlacements: which identities are placed on the node, with no keys (SDS mode). */
  watchPlacements(): grpc.ClientReadableStream<PlacementsUpdate> {
    return this.client.makeServerStreamRequest(NodeService.WatchPlacements.path, NodeService.WatchPlacements.requestSerialize, NodeService.WatchPlacements.responseDeserialize, {});
  }

  close(): void {
    this.client.close();
    this.channel.close();
  }

  private unary<Req, Res>(def: grpc.MethodDefinition<Req, Res>, request: Req, deadlineMs: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
    });
  }
}

/** grpc-js's words for a server certificate that did not verify against the roots it was given. */
const UNTRUSTED = /self[- ]signed certificate|unable to (get local issuer|verify)|certificate (signature failure|has expired|is not yet valid)|CERT_|unknown ca|Hostname\/IP does not match|does not match certificate/i;

/**
 * Why a call to the CA failed, cause first, when the cause is that the CA's certificate does not
 * chain to --ca-root (grpc-js reports it as UNAVAILABLE "No connection established ... self-signed
 * certificate in certificate chain"): it dials the CA, reads the chain it presents, and names both
 * roots' fingerprints. Undefined for any other failure.
 */
export async function explainUntrustedCa(err: unknown, opts: Pick<CaClientOptions, 'address' | 'rootCertPem' | 'serverName'>): Promise<string | undefined> {
  const details = String((err as { details?: string }).details ?? (err as Error)?.message ?? '');
  if ((err as { code?: number }).code !== grpc.status.UNAVAILABLE || !UNTRUSTED.test(details)) return undefined;
  const ours = splitCertificates(opts.rootCertPem).map((p) => new X509Certificate(p).fingerprint256);
  const [host, port] = [opts.address.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(opts.address)?.[1] ?? 8060)];
  const presented = await new Promise<string | undefined>((resolve) => {
    const s = tls.connect({ host, port, servername: opts.serverName ?? 'istio-ca', rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      let c = s.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
      while (c && c.issuerCertificate && c.issuerCertificate !== c) c = c.issuerCertificate;
      s.destroy();
      resolve(c?.fingerprint256);
    });
    s.setTimeout(5000, () => (s.destroy(), resolve(undefined)));
    s.on('error', () => resolve(undefined));
  });
  const cause = /Hostname\/IP does not match|does not match certificate/i.test(details)
    ? `the CA at ${opts.address} presents a certificate without the name ${opts.serverName ?? 'istio-ca'} (--ca-server-name)`
    : `the CA at ${opts.address} presents a certificate that does not chain to --ca-root`;
  const roots = presented ? ` (it chains to a root with sha256 ${presented}; --ca-root holds ${ours.join(', ')})` : ` (--ca-root holds ${ours.join(', ')})`;
  return `${cause}${roots}; give the agent the CA's own root (citadel-data/ca/istio-ca-secret/ca-cert.pem, or --root-cert of a plugged-in CA)`;
}
