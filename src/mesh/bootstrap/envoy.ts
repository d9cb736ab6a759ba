import { isIP } from 'node:net';
import {
  CERTS_MOUNT_PATH, DEFAULT_ADMIN_PORT, DEFAULT_XDS_ADDRESS, ENVOY_SDS_FILES, SDS_CERT_SECRET, SDS_CLUSTER, SDS_MOUNT_PATH, SDS_ROOT_SECRET,
  SDS_SOCKET_NAME, XDS_CLUSTER, XDS_SERVER_NAME, XDS_SOCKET_NAME,
} from './contract';
import { envoySdsFileSecret } from './sds-files';
import { parseHostPort, type HostPort } from './host-port';
import type { JsonObject } from '../../common/json';
import { cleanDir, nodeId, nodeMetadata, type BootstrapNode } from './node';
import { toYaml } from './yaml';

/** What an Envoy sidecar's bootstrap depends on; everything else comes over xDS. */
export interface EnvoyBootstrapOptions extends Omit<BootstrapNode, 'generator'> {
  /** files mode: where the xDS server listens (default citadel.marathon.mesos:15012); sds mode uses the agent's xds socket */
  xdsAddress?: HostPort;
  /** admin listener on 127.0.0.1 (default 15000) */
  adminPort?: number;
  /** files mode: where the sidecar sees cert-chain.pem, key.pem, root-cert.pem (default /etc/certs) */
  certsDir?: string;
  /** sds mode: where the sidecar sees its identity's `socket` and `xds` (default /var/run/secrets/workload-spiffe-uds) */
  socketDir?: string;
}

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** HTTP/2 to a gRPC server; keepalive so a dead xDS connection is noticed and re-dialled. */
function http2Options(keepalive: boolean): JsonObject {
  return {
    [HTTP_PROTOCOL_OPTIONS]: {
      '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`,
      explicit_http_config: {
        http2_protocol_options: keepalive ? { connection_keepalive: { interval: '30s', timeout: '10s' } } : {},
      },
    },
  };
}

function pipeCluster(name: string, path: string, keepalive: boolean): JsonObject {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    typed_extension_protocol_options: http2Options(keepalive),
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path } } } }] }] },
  };
}

/**
 * files mode: mTLS to the xDS server with the workload certificate, checking its DNS SAN `istiod`.
 * The certificate and root come from the agent's Envoy SDS files in that directory, re-read when
 * the agent swaps its files: a reconnect after the first certificate expired presents the current one.
 */
function tcpXdsCluster(address: HostPort, certsDir: string): JsonObject {
  const dir = cleanDir(certsDir);
  return {
    name: XDS_CLUSTER,
    type: isIP(address.host) === 0 ? 'STRICT_DNS' : 'STATIC',
    connect_timeout: '5s',
    typed_extension_protocol_options: http2Options(true),
    load_assignment: {
      cluster_name: XDS_CLUSTER,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: address.host, port_value: address.port } } } }] }],
    },
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        sni: XDS_SERVER_NAME,
        common_tls_context: {
          alpn_protocols: ['h2'],
          tls_certificate_sds_secret_configs: [envoySdsFileSecret(dir, SDS_CERT_SECRET, ENVOY_SDS_FILES.cert)],
          combined_validation_context: {
            default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: XDS_SERVER_NAME } }] },
            validation_context_sds_secret_config: envoySdsFileSecret(dir, SDS_ROOT_SECRET, ENVOY_SDS_FILES.root),
          },
        },
      },
    },
  };
}

/** The Envoy v3 bootstrap of a sidecar (sidecar contract, "Envoy bootstrap"). */
export function envoyBootstrap(o: EnvoyBootstrapOptions): JsonObject {
  const node: BootstrapNode = { ...o, generator: 'envoy' };
  const sockets = cleanDir(o.socketDir ?? SDS_MOUNT_PATH);
  const clusters: JsonObject[] =
    o.certMode === 'sds'
      ? [pipeCluster(SDS_CLUSTER, `${sockets}/${SDS_SOCKET_NAME}`, false), pipeCluster(XDS_CLUSTER, `${sockets}/${XDS_SOCKET_NAME}`, true)]
      : [tcpXdsCluster(o.xdsAddress ?? parseHostPort(DEFAULT_XDS_ADDRESS, 'xds address'), o.certsDir ?? CERTS_MOUNT_PATH)];
  return {
    node: { id: nodeId(node), cluster: o.marathonId, metadata: nodeMetadata(node) },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: o.adminPort ?? DEFAULT_ADMIN_PORT } } },
    static_resources: { clusters },
    dynamic_resources: {
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        set_node_on_first_message_only: true,
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
      },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
  };
}

/** The same bootstrap as YAML text. */
export function envoyBootstrapYaml(o: EnvoyBootstrapOptions): string {
  return toYaml(envoyBootstrap(o));
}
