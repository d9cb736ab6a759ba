/** Listeners for proxyless gRPC: the client's api_listener per xds:/// target, the server's per bound address. */
import type { JsonObject } from '../../common/json';
import { EXTENSION, ROUTER_FILTER, socketAddress } from '../envoy/filters';
import { inboundRouteName } from '../names';
import { TYPE_URL, xdsResource, type XdsResource } from '../resources';
import { grpcServerMtls } from './tls';

/** A client Listener: every call on the channel to `cluster` (route config inline: gRPC needs no RDS). */
export function grpcClientListener(name: string, cluster: string): XdsResource {
  return xdsResource(TYPE_URL.listener, name, {
    name,
    api_listener: {
      api_listener: {
        '@type': EXTENSION.httpConnectionManager.type,
        stat_prefix: 'outbound',
        route_config: { name: cluster, virtual_hosts: [{ name: cluster, domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster } }] }] },
        http_filters: [ROUTER_FILTER],
      },
    },
  });
}

/**
 * A server Listener, at the address the server binds (grpc-js refuses one that differs).
 * `non_forwarding_action`: the server handles calls itself. The HCM's stat_prefix differs
 * between mTLS and plaintext: grpc-js-xds 1.14 compares filters first, and two listeners whose
 * filters differ never reach its broken transport_socket comparison (a mode switch would
 * otherwise be ignored, or crash the server).
 */
export function grpcServerListener(name: string, ip: string, port: number, mtls: boolean): XdsResource {
  const route = inboundRouteName(port);
  const chain: JsonObject = {
    filters: [
      {
        name: EXTENSION.httpConnectionManager.name,
        typed_config: {
          '@type': EXTENSION.httpConnectionManager.type,
          stat_prefix: mtls ? 'inbound-mtls' : 'inbound-plaintext',
          route_config: { name: route, virtual_hosts: [{ name: route, domains: ['*'], routes: [{ match: { prefix: '/' }, non_forwarding_action: {} }] }] },
          http_filters: [ROUTER_FILTER],
        },
      },
    ],
    ...(mtls && { transport_socket: grpcServerMtls() }),
  };
  return xdsResource(TYPE_URL.listener, name, { name, address: socketAddress(ip, port), filter_chains: [chain] });
}
