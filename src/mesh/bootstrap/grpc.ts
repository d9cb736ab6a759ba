import {
  CERT_FILES, CERTS_MOUNT_PATH, DEFAULT_GRPC_REFRESH_INTERVAL, GRPC_CERT_PROVIDER, GRPC_SERVER_LISTENER_TEMPLATE,
  SDS_MOUNT_PATH, XDS_SOCKET_NAME,
} from './contract';
import type { JsonObject } from '../../common/json';
import { cleanDir, nodeId, nodeMetadata, type BootstrapNode } from './node';

/** What a proxyless gRPC service's bootstrap depends on (grpc-js-xds, gRFC A27/A29). */
export interface GrpcBootstrapOptions extends Omit<BootstrapNode, 'generator' | 'certMode' | 'capture'> {
  /** where the identity's cert-chain.pem, key.pem, root-cert.pem are mounted (default /etc/certs) */
  certsDir?: string;
  /** how often grpc-js re-reads them (a protobuf JSON duration, default 10s) */
  refreshInterval?: string;
  /** where the service sees its identity's `xds` socket (default /var/run/secrets/workload-spiffe-uds) */
  socketDir?: string;
}

/**
 * The bootstrap for GRPC_XDS_BOOTSTRAP(_CONFIG): xDS over the node agent's per-identity socket,
 * certificates from files. A proxyless service captures nothing and reads its certificates from
 * files, so its node says `files` and `explicit`.
 */
export function grpcBootstrap(o: GrpcBootstrapOptions): JsonObject {
  const node: BootstrapNode = { ...o, generator: 'grpc', certMode: 'files', capture: 'explicit' };
  const dir = cleanDir(o.certsDir ?? CERTS_MOUNT_PATH);
  const sockets = cleanDir(o.socketDir ?? SDS_MOUNT_PATH);
  return {
    xds_servers: [{ server_uri: `unix://${sockets}/${XDS_SOCKET_NAME}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: nodeId(node), cluster: o.marathonId, locality: {}, metadata: nodeMetadata(node) },
    certificate_providers: {
      [GRPC_CERT_PROVIDER]: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: `${dir}/${CERT_FILES.certChain}`,
          private_key_file: `${dir}/${CERT_FILES.key}`,
          ca_certificate_file: `${dir}/${CERT_FILES.root}`,
          refresh_interval: o.refreshInterval ?? DEFAULT_GRPC_REFRESH_INTERVAL,
        },
      },
    },
    server_listener_resource_name_template: GRPC_SERVER_LISTENER_TEMPLATE,
  };
}
