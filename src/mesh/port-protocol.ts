/** A port's protocol from its name, as Istio reads Kubernetes port names (`<protocol>[-<suffix>]`). */
import type { PortProtocol } from './model';

const BY_PREFIX: Readonly<Record<string, PortProtocol>> = { http: 'http', http2: 'http2', grpc: 'grpc', tcp: 'tcp' };

/**
 * `http`, `http-api` -> http; `http2` -> http2; `grpc`, `grpc-users` -> grpc; case-insensitive.
 * `grpc-web...` is HTTP/1.1 or HTTP/2 carrying gRPC-Web, which Istio handles as HTTP: http.
 * Every other prefix Istio knows (https, tls, mongo, mysql, redis, ...) is proxied as TCP here,
 * as are unnamed ports and unknown names.
 */
export function portProtocolOf(name: string | undefined): PortProtocol {
  if (name === undefined) return 'tcp';
  const lower = name.toLowerCase();
  if (lower.startsWith('grpc-web')) return 'http';
  const dash = lower.indexOf('-');
  return BY_PREFIX[dash < 0 ? lower : lower.slice(0, dash)] ?? 'tcp';
}
