/** Signing for the gRPC API: one path through the CA, and how its refusals become gRPC statuses and Citadel's metrics. */
import { CertificateAuthority, IssuedCertificate, SigningError } from '../ca/authority';
import { GrpcError, status } from '../api/grpc/server';
import type { Logger } from '../common/log';
import { CsrError } from '../pki/csr';
import { Identity } from '../pki/identity';
import type { Caller } from './authn';
import type { ServerMetrics } from './metrics';
import { authorizedSubject, IdExtractionError, PlacementSource } from './placement';

export class CsrSigning {
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly placements: PlacementSource,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
  ) {}

  /**
   * CreateCertificate and HandleCSR: a workload (or node) renews its own identity; a node may also
   * obtain the identities Marathon places on its host right now. The SAN comes from that
   * authorised identity; the CSR must name exactly it.
   */
  sign(caller: Caller, csr: string | Buffer, requestedTtlMs: number): IssuedCertificate {
    return this.signAs(csr, (uris) => authorizedSubject(caller, uris, this.ca.trustDomain, this.placements, this.log), requestedTtlMs);
  }

  /** Signs for a subject already decided (a node attesting with a join token). */
  signAs(csr: string | Buffer, subject: Identity | ((uris: string[]) => Identity), requestedTtlMs: number): IssuedCertificate {
    try {
      const issued = this.ca.signCsr(csr, subject, requestedTtlMs);
      this.metrics.successCertIssuanceCount.inc();
      return issued;
    } catch (err) {
      throw this.refusal(err);
    }
  }

  /** The gRPC status of a refusal, counted under Citadel's metric for it. */
  refusal(err: unknown): GrpcError {
    if (err instanceof IdExtractionError) {
      this.metrics.idExtractionErrCount.inc();
      return err;
    }
    if (err instanceof GrpcError) return err;
    if (err instanceof CsrError) {
      if (err.rule === 'identity') {
        this.metrics.csrSignErrCount.inc({ error: 'CSR_ERROR' });
        return new GrpcError(status.PERMISSION_DENIED, err.message);
      }
      this.metrics.csrParsingErrCount.inc();
      return new GrpcError(status.INVALID_ARGUMENT, `CSR refused (${err.rule}): ${err.message}`);
    }
    if (err instanceof SigningError) {
      this.metrics.csrSignErrCount.inc({ error: err.code });
      const code = err.code === 'TTL_ERROR' ? status.INVALID_ARGUMENT : err.code === 'CA_NOT_READY' ? status.UNAVAILABLE : status.INTERNAL;
      return new GrpcError(code, err.message);
    }
    this.metrics.csrSignErrCount.inc({ error: 'CERT_GEN_ERROR' });
    return new GrpcError(status.INTERNAL, `cannot sign: ${(err as Error)?.message ?? String(err)}`);
  }
}
