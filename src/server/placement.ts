/** Which workload identities a node may have: those Marathon places on its host right now. */
import { GrpcError, status } from '../api/grpc/server';
import type { Logger } from '../common/log';
import { AccountRef, Identity, parseSpiffeId } from '../pki/identity';
import type { Caller } from './authn';

/** What the server needs of the Marathon view: where each identity runs. */
export interface PlacementSource {
  /** Identities with a live task or pod instance on this agent host. */
  identitiesOnHost(host: string): AccountRef[];
  isPlacedOn(account: AccountRef, host: string): boolean;
  /** Called after each change; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** No Marathon view (a CA without a controller): nodes are entitled to no workload identity. */
export const NO_PLACEMENTS: PlacementSource = { identitiesOnHost: () => [], isPlacedOn: () => false, onChange: () => () => {} };

/**
 * The identity a caller may have signed, given the URI SANs its CSR asks for: a workload (or a
 * node renewing itself) gets its own identity; a node may also have a workload identity of our
 * trust domain that Marathon places on its host, checked at every request so the right ends when
 * the task leaves. Throws a GrpcError (PERMISSION_DENIED, or INVALID_ARGUMENT for a SAN that is no
 * SPIFFE ID) to refuse.
 */
export function authorizedSubject(caller: Caller, requestedUris: string[], trustDomain: string, placements: PlacementSource, log: Logger): Identity {
  if (caller.identity.kind !== 'node' || requestedUris.length !== 1 || requestedUris[0] === caller.spiffeId) return caller.identity;
  let wanted: Identity;
  try {
    wanted = parseSpiffeId(requestedUris[0]);
  } catch (err) {
    throw new IdExtractionError(`CSR URI SAN: ${(err as Error).message}`);
  }
  const host = caller.identity.host;
  if (wanted.kind !== 'workload' || wanted.trustDomain !== trustDomain) {
    throw new GrpcError(status.PERMISSION_DENIED, `node ${host} may obtain only workload identities of trust domain ${trustDomain} placed on it, not ${requestedUris[0]}`);
  }
  if (!placements.isPlacedOn(wanted, host)) {
    log.warn('node asked for an identity not placed on it', { host, identity: requestedUris[0] });
    throw new GrpcError(status.PERMISSION_DENIED, `Marathon places no task of ${requestedUris[0]} on host ${host}; a node may obtain only the identities running on it`);
  }
  return wanted;
}

/** A CSR's SAN that is not a SPIFFE ID of ours (Citadel's id-extraction error). */
export class IdExtractionError extends GrpcError {
  constructor(message: string) {
    super(status.INVALID_ARGUMENT, message);
  }
}
