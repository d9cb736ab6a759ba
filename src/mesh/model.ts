/**
 * The mesh as the control plane sees it: one service per Marathon app and pod, its ports and its
 * endpoints, derived from the Marathon view (services.ts builds it), and the proxies that ask for
 * configuration. Generators turn (mesh, policy, proxy) into Envoy or gRPC resources.
 */
import type { WorkloadIdentity } from '../pki/identity';

/** A port's protocol, from its name's prefix as Istio reads it (`http-api`, `grpc`, `tcp-db`); unnamed or unknown -> tcp. */
export type PortProtocol = 'http' | 'http2' | 'grpc' | 'tcp';

export interface ServicePort {
  /** The port's name in the definition (portDefinitions/portMappings name, pod endpoint name). */
  name?: string;
  /** The port the workload serves on inside its container (or on the host, in host networking): where the sidecar's inbound listener binds. */
  port: number;
  protocol: PortProtocol;
}

/** One running instance (task or pod instance) of a service. */
export interface ServiceEndpoint {
  /** Marathon task id or pod instance id. */
  instanceId: string;
  /** The Mesos agent it runs on. */
  host: string;
  /** Where callers connect: the container's IP where its network gives one, else the agent host. */
  address: string;
  /** Per service port (same order as MeshService.ports): the port callers connect to at `address` (host port, or the container port on a container IP). */
  ports: number[];
  /** False when Marathon health checks report it failing (not yet checked counts as not healthy when the app has health checks). */
  healthy: boolean;
}

/** A service the workload calls, from the label `citadel.io/upstreams` ("<service>:<local port>,..."). */
export interface Upstream {
  /** As written: a Marathon id (`/prod/db`) or a Mesos-DNS name (`db-prod.marathon.mesos`). */
  service: string;
  /** The 127.0.0.1 port the sidecar listens on for it (explicit capture). */
  localPort: number;
}

export interface MeshService {
  kind: 'app' | 'pod';
  /** `/prod/payments/api` */
  marathonId: string;
  /** Mesos-DNS name: `api-payments-prod.marathon.mesos` */
  dnsName: string;
  namespace: string;
  serviceAccount: string;
  /** Marathon labels (policy selectors match on them). */
  labels: Readonly<Record<string, string>>;
  ports: ServicePort[];
  endpoints: ServiceEndpoint[];
  upstreams: Upstream[];
  /** Injected (label `sidecar.istio.io/status` present): Istio's auto-mTLS sends mTLS to it with no DestinationRule. */
  hasSidecar: boolean;
}

/**
 * One consistent view of the mesh. `version` changes whenever anything in it does; a service
 * object is replaced, never changed, so generators may memoize on its identity.
 */
export interface MeshSnapshot {
  readonly version: number;
  /** By Marathon id. */
  readonly services: ReadonlyMap<string, MeshService>;
  /** A service by Marathon id or Mesos-DNS name (how upstreams and DestinationRule hosts name it). */
  lookup(name: string): MeshService | undefined;
}

/** Who asks for configuration, from the xDS node (metadata per /work/contracts/sidecar.md) and the authenticated caller. */
export interface ProxyNode {
  /** node.id: `sidecar~<ip>~<instance>` or `grpc~<ip>~<instance>`. */
  id: string;
  generator: 'envoy' | 'grpc';
  marathonId: string;
  /** The authenticated identity (caller certificate, or the node agent's socket). */
  identity: WorkloadIdentity;
  certMode: 'sds' | 'files';
  /** Files mode: the directory the proxy reads cert-chain.pem, key.pem and root-cert.pem from, when not /etc/certs. */
  certsDir?: string;
  capture: 'explicit' | 'redirect';
  /** Where the inbound listeners bind (explicit capture). */
  instanceIp: string;
}
