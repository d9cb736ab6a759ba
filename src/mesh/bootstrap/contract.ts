import { CITADEL_FILES } from '../../pki/identity';

/**
 * The sidecar contract (/work/contracts/sidecar.md) as constants: the names the injector, the
 * bootstraps and the xDS server must agree on. Change them only together with that contract.
 */

export type CertMode = 'sds' | 'files';
export type CaptureMode = 'explicit' | 'redirect';
/** Which generator the xDS server runs for a node: Envoy sidecars or proxyless gRPC. */
export type ProxyGenerator = 'envoy' | 'grpc';

export const CERT_MODES: readonly CertMode[] = ['sds', 'files'];
export const CAPTURE_MODES: readonly CaptureMode[] = ['explicit', 'redirect'];

// Node agent directories on the host, per identity `<dir>/<ns>/<sa>`.
export const DEFAULT_SDS_DIR = '/var/run/citadel/sds';
export const DEFAULT_CERTS_DIR = '/var/lib/citadel/certs';

// Where the identity directory is mounted inside the sidecar.
export const SDS_MOUNT_PATH = '/var/run/secrets/workload-spiffe-uds';
/** The node agent's sockets in an identity directory: SDS, and the xDS proxy. */
export const SDS_SOCKET_NAME = 'socket';
export const XDS_SOCKET_NAME = 'xds';
export const SDS_SOCKET_PATH = `${SDS_MOUNT_PATH}/${SDS_SOCKET_NAME}`;
export const XDS_SOCKET_PATH = `${SDS_MOUNT_PATH}/${XDS_SOCKET_NAME}`;
export const CERTS_MOUNT_PATH = '/etc/certs';
/** The identity's files in a files-mode directory: Citadel's names. */
export const CERT_FILES = CITADEL_FILES;
/**
 * Beside them, the same certificate and root as Envoy SDS files (DiscoveryResponse JSON, the PEMs
 * inline, secrets `default` and `ROOTCA`): a files-mode bootstrap's xds-grpc cluster reads them
 * with path_config_source, so the xDS connection's own certificate rotates too (Envoy cannot take
 * that one over the connection it secures).
 */
export const ENVOY_SDS_FILES = { cert: 'envoy-sds-cert.json', root: 'envoy-sds-root.json' } as const;

// Envoy bootstrap.
export const DEFAULT_ADMIN_PORT = 15000;
export const DEFAULT_XDS_ADDRESS = 'citadel.marathon.mesos:15012';
export const SDS_CLUSTER = 'sds-grpc';
export const XDS_CLUSTER = 'xds-grpc';
/** SDS secret names the xDS server references on cluster sds-grpc. */
export const SDS_CERT_SECRET = 'default';
export const SDS_ROOT_SECRET = 'ROOTCA';
/** The name the xDS server's certificate carries (DNS SAN) and the SNI a files-mode sidecar sends. */
export const XDS_SERVER_NAME = 'istiod';

// gRPC proxyless bootstrap.
export const GRPC_SERVER_LISTENER_TEMPLATE = 'xds.istio.io/grpc/lds/inbound/%s';
export const GRPC_CERT_PROVIDER = 'default';
export const DEFAULT_GRPC_REFRESH_INTERVAL = '10s';

// Traffic capture (redirect mode uses Istio's ports and proxy uid).
export const OUTBOUND_CAPTURE_PORT = 15001;
export const INBOUND_CAPTURE_PORT = 15006;
export const PROXY_UID = 1337;
export const PROXY_GID = 1337;
export const MESOS_AGENT_PORT = 5051;

// Node metadata keys (strings).
export const META = {
  marathonId: 'CITADEL_MARATHON_ID',
  namespace: 'CITADEL_NAMESPACE',
  serviceAccount: 'CITADEL_SERVICE_ACCOUNT',
  spiffeId: 'CITADEL_SPIFFE_ID',
  trustDomain: 'CITADEL_TRUST_DOMAIN',
  certMode: 'CITADEL_CERT_MODE',
  capture: 'CITADEL_CAPTURE',
  generator: 'CITADEL_GENERATOR',
  /** Files mode, when the proxy sees its files somewhere else than /etc/certs: that directory. */
  certsDir: 'CITADEL_CERTS_DIR',
} as const;

// Marathon labels (Istio's names, and ours under citadel.io/).
export const LABEL = {
  inject: 'sidecar.istio.io/inject',
  status: 'sidecar.istio.io/status',
  proxyCpu: 'sidecar.istio.io/proxyCPU',
  proxyMemory: 'sidecar.istio.io/proxyMemory',
  includeOutboundIpRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIpRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  upstreams: 'citadel.io/upstreams',
  capture: 'citadel.io/capture',
  convertedFromApp: 'citadel.io/converted-from-app',
} as const;

/** `<dir>/<ns>/<sa>`: one identity's directory under the agent's sds-dir or certs-dir. */
export function identityDirectory(dir: string, namespace: string, serviceAccount: string): string {
  return `${dir.replace(/\/+$/, '')}/${namespace}/${serviceAccount}`;
}
