/** The Envoy extensions the generated configuration uses, by name and type URL, and the few shapes built from them. */
import type { JsonObject } from '../../common/json';

const TYPE = 'type.googleapis.com/';

export const EXTENSION = {
  httpConnectionManager: { name: 'envoy.filters.network.http_connection_manager', type: `${TYPE}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager` },
  tcpProxy: { name: 'envoy.filters.network.tcp_proxy', type: `${TYPE}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy` },
  router: { name: 'envoy.filters.http.router', type: `${TYPE}envoy.extensions.filters.http.router.v3.Router` },
  tlsInspector: { name: 'envoy.filters.listener.tls_inspector', type: `${TYPE}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector` },
  originalDst: { name: 'envoy.filters.listener.original_dst', type: `${TYPE}envoy.extensions.filters.listener.original_dst.v3.OriginalDst` },
  tls: { name: 'envoy.transport_sockets.tls', upstream: `${TYPE}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`, downstream: `${TYPE}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext` },
  httpProtocolOptions: { name: 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions', type: `${TYPE}envoy.extensions.upstreams.http.v3.HttpProtocolOptions` },
} as const;

/** Resources that come over the same ADS stream as the one asking (RDS, EDS). */
export const ADS_SOURCE: JsonObject = { ads: {}, resource_api_version: 'V3' };

export const ROUTER_FILTER: JsonObject = { name: EXTENSION.router.name, typed_config: { '@type': EXTENSION.router.type } };

export function listenerFilter(ext: { name: string; type: string }): JsonObject {
  return { name: ext.name, typed_config: { '@type': ext.type } };
}

/**
 * What an HTTP listener tells the app about the caller: SANITIZE_SET puts the verified client
 * certificate's URI SAN (its SPIFFE ID) into x-forwarded-client-cert; SANITIZE strips whatever a
 * plaintext caller sent there.
 */
export type ClientCertForwarding = 'set' | 'strip' | 'none';

export function httpConnectionManager(statPrefix: string, routeConfigName: string, forwarding: ClientCertForwarding): JsonObject {
  return {
    name: EXTENSION.httpConnectionManager.name,
    typed_config: {
      '@type': EXTENSION.httpConnectionManager.type,
      stat_prefix: statPrefix,
      rds: { config_source: ADS_SOURCE, route_config_name: routeConfigName },
      http_filters: [ROUTER_FILTER],
      ...(forwarding === 'set' && { forward_client_cert_details: 'SANITIZE_SET', set_current_client_cert_details: { uri: true } }),
      ...(forwarding === 'strip' && { forward_client_cert_details: 'SANITIZE' }),
    },
  };
}

export function tcpProxy(statPrefix: string, cluster: string): JsonObject {
  return { name: EXTENSION.tcpProxy.name, typed_config: { '@type': EXTENSION.tcpProxy.type, stat_prefix: statPrefix, cluster } };
}

/** typed_extension_protocol_options that make a cluster speak HTTP/2 to its hosts (http2 and grpc ports). */
export const HTTP2_UPSTREAM: JsonObject = {
  [EXTENSION.httpProtocolOptions.name]: {
    '@type': EXTENSION.httpProtocolOptions.type,
    explicit_http_config: { http2_protocol_options: {} },
  },
};

export function socketAddress(address: string, port: number): JsonObject {
  return { socket_address: { address, port_value: port } };
}
