/** Node attestation: a one-time join token for this host -> a node certificate. */
import type { IssuedCertificate } from '../ca/authority';
import type { AttestNodeRequest } from '../api/ca-api';
import { GrpcError, status } from '../api/grpc/server';
import type { Logger } from '../common/log';
import { parseAndValidateCsr } from '../pki/csr';
import { NodeIdentity, nodeIdentity, spiffeId } from '../pki/identity';
import type { JoinTokenRecord } from '../store/store';
import { evictedMessage, NodeEvictions } from './evictions';
import { hashJoinToken } from './join-token';
import type { ServerMetrics } from './metrics';
import type { CsrSigning } from './signing';

/** What attestation needs of the store. */
export interface JoinTokens {
  /** Removes and returns the token record atomically: a token can be consumed once. */
  consumeJoinToken(hash: string): Promise<JoinTokenRecord | undefined>;
}

export class NodeAttestation {
  constructor(
    private readonly trustDomain: string,
    private readonly tokens: JoinTokens,
    private readonly signing: CsrSigning,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
    private readonly evictions?: NodeEvictions,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Spends the token (its first use, right or wrong, spends it; a CSR that fails validation does
   * not), checks that it has not expired and was created for `host`, and signs the node certificate.
   */
  async attest(req: AttestNodeRequest, peer: string): Promise<IssuedCertificate> {
    const { joinToken, host, csr, validityDuration } = req;
    let node: NodeIdentity;
    try {
      node = nodeIdentity(this.trustDomain, host);
    } catch (err) {
      throw new GrpcError(status.INVALID_ARGUMENT, (err as Error).message);
    }
    if (!joinToken) throw new GrpcError(status.UNAUTHENTICATED, 'no join token; create one with `citadel token create --host <host>`');
    try {
      parseAndValidateCsr(csr, [spiffeId(node)]);
    } catch (err) {
      this.metrics.nodeAttestationCount.inc({ result: 'bad_csr' });
      throw this.signing.refusal(err);
    }
    const record = await this.tokens.consumeJoinToken(hashJoinToken(joinToken));
    const refuse = (result: string, code: status, message: string) => {
      this.metrics.nodeAttestationCount.inc({ result });
      this.metrics.authenticationFailureCount.inc();
      this.log.warn('node attestation refused', { host, peer, reason: message });
      return new GrpcError(code, message);
    };
    if (!record) throw refuse('unknown_token', status.UNAUTHENTICATED, 'the join token is unknown or was already used; create a new one with `citadel token create --host <host>`');
    if (Date.parse(record.expiresAt) <= this.now()) throw refuse('expired_token', status.UNAUTHENTICATED, `the join token expired at ${record.expiresAt}; create a new one`);
    if (record.host !== host) throw refuse('wrong_host', status.PERMISSION_DENIED, `the join token was created for host ${record.host}, not ${host}; it is now spent`);
    const eviction = this.evictions?.refusingToken(host, record.createdAt);
    if (eviction) throw refuse('evicted', status.PERMISSION_DENIED, `the join token was created before the eviction: ${evictedMessage(eviction)}`);
    const issued = this.signing.signAs(csr, node, validityDuration * 1000);
    this.metrics.nodeAttestationCount.inc({ result: 'ok' });
    this.log.info('node attested', { host, peer, notAfter: issued.notAfter.toISOString() });
    return issued;
  }
}
