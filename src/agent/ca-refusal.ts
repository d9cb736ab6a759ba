import { status as grpcStatus } from '@grpc/grpc-js';

/**
 * Why the CA refuses this node, when an error from it says so (PERMISSION_DENIED: evicted, or not
 * entitled; UNAUTHENTICATED: the node certificate is unknown or expired), or undefined for an
 * outage (unreachable, overloaded, shutting down) that retrying will outlast. The agent logs the
 * two differently: a refusal needs a person, an outage does not.
 */
export function caRefusal(err: unknown): string | undefined {
  const e = err as { code?: number; details?: string; message?: string } | undefined;
  if (e?.code !== grpcStatus.PERMISSION_DENIED && e?.code !== grpcStatus.UNAUTHENTICATED) return undefined;
  return `${grpcStatus[e.code]}: ${e.details ?? e.message ?? ''}`;
}
