/** Clusters for proxyless gRPC clients: EDS, round robin, and TLS only as the mesh's own mTLS. */
import type { ClientTls } from '../client-tls';
import { ADS_SOURCE } from '../envoy/filters';
import type { MeshService, ServicePort } from '../model';
import { outboundClusterName } from '../names';
import { TYPE_URL, xdsResource, type XdsResource } from '../resources';
import { grpcClientMtls } from './tls';

/**
 * `outbound|<port>||<dnsName>`. A DestinationRule's SIMPLE or MUTUAL names files, which grpc-js
 * cannot use (only certificate providers): such a cluster is not generated, so calls fail
 * rather than go out with less security than asked.
 */
export function grpcCluster(service: MeshService, port: ServicePort, tls: ClientTls): XdsResource | { problem: string } {
  const name = outboundClusterName(port.port, service.dnsName);
  if (tls.kind === 'simple' || tls.kind === 'mutual') {
    return { problem: `DestinationRule ${tls.rule} asks ${tls.kind.toUpperCase()} TLS with files for ${name}, which proxyless gRPC cannot use (only ISTIO_MUTUAL or DISABLE)` };
  }
  return xdsResource(TYPE_URL.cluster, name, {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_SOURCE },
    lb_policy: 'ROUND_ROBIN',
    ...(tls.kind === 'istio-mutual' && { transport_socket: grpcClientMtls(tls.subjectAltNames, tls.sni) }),
  });
}
