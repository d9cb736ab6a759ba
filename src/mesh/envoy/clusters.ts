/** Envoy clusters: outbound (EDS, with the client TLS decided for it), inbound (static, to the app on loopback), passthrough. */
import type { JsonObject } from '../../common/json';
import type { ClientTls } from '../client-tls';
import type { MeshService, ServicePort } from '../model';
import { INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_SOURCE, PASSTHROUGH_CLUSTER, inboundClusterName, outboundClusterName } from '../names';
import { isHttp2 } from '../protocols';
import { TYPE_URL, xdsResource, type XdsResource } from '../resources';
import { ADS_SOURCE, HTTP2_UPSTREAM, socketAddress } from './filters';
import { upstreamTls, type CertSource } from './tls';

/** Istio's default; a mesh service on a busy agent may take a while to accept. */
const CONNECT_TIMEOUT = '10s';

/** `outbound|<port>||<dnsName>`, its endpoints from EDS (the ClusterLoadAssignment of the same name). */
export function outboundCluster(service: MeshService, port: ServicePort, tls: ClientTls, certs: CertSource): XdsResource {
  const name = outboundClusterName(port.port, service.dnsName);
  const http2 = isHttp2(port.protocol);
  return xdsResource(TYPE_URL.cluster, name, {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_SOURCE },
    connect_timeout: CONNECT_TIMEOUT,
    ...(http2 && { typed_extension_protocol_options: HTTP2_UPSTREAM }),
    ...(tls.kind !== 'plaintext' && { transport_socket: upstreamTls(tls, certs, http2) }),
  });
}

/** `inbound|<port>||`: the app on 127.0.0.1:<port>, a static host (no EDS). */
export function inboundCluster(port: ServicePort): XdsResource {
  const name = inboundClusterName(port.port);
  return xdsResource(TYPE_URL.cluster, name, {
    name,
    type: 'STATIC',
    connect_timeout: CONNECT_TIMEOUT,
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress('127.0.0.1', port.port) } }] }] },
    ...(isHttp2(port.protocol) && { typed_extension_protocol_options: HTTP2_UPSTREAM }),
  });
}

function originalDestination(name: string, extra: JsonObject = {}): XdsResource {
  return xdsResource(TYPE_URL.cluster, name, { name, type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: CONNECT_TIMEOUT, ...extra });
}

/** Redirect capture: outbound connections to anything but an upstream, to where they were going. */
export const PASSTHROUGH: XdsResource = originalDestination(PASSTHROUGH_CLUSTER);

/** Redirect capture: inbound connections to a port the service does not declare, to the app from 127.0.0.6 (which the capture rules let through). */
export const INBOUND_PASSTHROUGH: XdsResource = originalDestination(INBOUND_PASSTHROUGH_CLUSTER, {
  upstream_bind_config: { source_address: socketAddress(INBOUND_PASSTHROUGH_SOURCE, 0).socket_address },
});
