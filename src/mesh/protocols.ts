import type { PortProtocol } from './model';

/** Ports whose traffic Envoy handles as HTTP (an HttpConnectionManager with routes); the rest get a tcp_proxy. */
export function isHttp(protocol: PortProtocol): boolean {
  return protocol !== 'tcp';
}

/** Ports spoken as HTTP/2 end to end (grpc is HTTP/2). */
export function isHttp2(protocol: PortProtocol): boolean {
  return protocol === 'http2' || protocol === 'grpc';
}
