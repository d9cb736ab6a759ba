/** Resource names, in Istio's shapes (mesh contract, "Names"): what Envoy and gRPC nodes ask for. */
import { formatHostPort } from './bootstrap/host-port';
import { GRPC_SERVER_LISTENER_TEMPLATE } from './bootstrap/contract';

/** `outbound|<port>||<dnsName>`: the Cluster to a service port, and its ClusterLoadAssignment. */
export function outboundClusterName(port: number, dnsName: string): string {
  return `outbound|${port}||${dnsName}`;
}

/** The port and host of an outbound cluster name; undefined for any other name. */
export function parseOutboundClusterName(name: string): { port: number; host: string } | undefined {
  const m = /^outbound\|(\d{1,5})\|\|(.+)$/.exec(name);
  if (!m) return undefined;
  const port = Number(m[1]);
  return port >= 1 && port <= 65535 ? { port, host: m[2] } : undefined;
}

/** `inbound|<port>||`: the static cluster to the app on 127.0.0.1:<port>. */
export function inboundClusterName(port: number): string {
  return `inbound|${port}||`;
}

/** `inbound|<instanceIp>|<port>` (explicit capture). */
export function inboundListenerName(instanceIp: string, port: number): string {
  return `inbound|${instanceIp}|${port}`;
}

/** `outbound|127.0.0.1|<localPort>` */
export function outboundListenerName(localPort: number): string {
  return `outbound|127.0.0.1|${localPort}`;
}

export function inboundRouteName(port: number): string {
  return `inbound|${port}`;
}

export function outboundRouteName(localPort: number): string {
  return `outbound|${localPort}`;
}

/** Redirect capture (Istio's names and ports). */
export const VIRTUAL_INBOUND = 'virtualInbound';
export const VIRTUAL_OUTBOUND = 'virtualOutbound';
/** Where redirected connections to anything that is not an upstream go: their original destination. */
export const PASSTHROUGH_CLUSTER = 'PassthroughCluster';
/** Where redirected inbound connections to ports that are not the service's go, from 127.0.0.6 as in Istio (the capture script lets that source through). */
export const INBOUND_PASSTHROUGH_CLUSTER = 'InboundPassthroughClusterIpv4';
export const INBOUND_PASSTHROUGH_SOURCE = '127.0.0.6';

/**
 * The SNI a client sidecar sends: Istio's DNS form of the cluster name (`outbound_.<port>_._.<dnsName>`),
 * since `|` is no hostname character. The server does not check it; it shows in its access log.
 */
export function meshServerName(port: number, dnsName: string): string {
  return `outbound_.${port}_._.${dnsName}`;
}

/** `xds.istio.io/grpc/lds/inbound/<ip>:<port>`: what a proxyless gRPC server asks for (its bootstrap's template, with the address it binds). */
export function grpcServerListenerName(ip: string, port: number): string {
  return GRPC_SERVER_LISTENER_TEMPLATE.replace('%s', formatHostPort({ host: ip, port }));
}

export const GRPC_SERVER_LISTENER_PREFIX = GRPC_SERVER_LISTENER_TEMPLATE.replace('%s', '');

/** Istio's name of a file-based certificate secret: `file-cert:<certificate chain>~<private key>`. */
export function fileCertSecretName(certChainPath: string, keyPath: string): string {
  return `file-cert:${certChainPath}~${keyPath}`;
}

/** Istio's name of a file-based root secret: `file-root:<CA certificates>`. */
export function fileRootSecretName(caPath: string): string {
  return `file-root:${caPath}`;
}
