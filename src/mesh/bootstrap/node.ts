import { spiffeId, type WorkloadIdentity } from '../../pki/identity';
import { CERTS_MOUNT_PATH, META, type CaptureMode, type CertMode, type ProxyGenerator } from './contract';

/** Who a proxy is, as its bootstrap tells the xDS server in node.id and node.metadata (the server reads it back as a mesh ProxyNode). */
export interface BootstrapNode {
  identity: WorkloadIdentity;
  /** the Marathon app or pod id, absolute (`/prod/payments/api`) */
  marathonId: string;
  certMode: CertMode;
  /** files mode: where the proxy sees its certificate files (default /etc/certs) */
  certsDir?: string;
  capture: CaptureMode;
  generator: ProxyGenerator;
  /** defaults for node.id; an Envoy sidecar replaces them at start (--service-node) */
  instanceIp?: string;
  instanceId?: string;
}

export const DEFAULT_INSTANCE_IP = '127.0.0.1';

/** The Mesos task-name form of a Marathon id (`/prod/payments/api` -> `prod_payments_api`), a stand-in instance id. */
export function taskNameOf(marathonId: string): string {
  return marathonId.split('/').filter((s) => s.length > 0).join('_');
}

/** `<generator prefix>~<instance-ip>~<instance-id>`: `sidecar~...` for Envoy, `grpc~...` for proxyless gRPC. */
export function nodeId(node: BootstrapNode): string {
  const prefix = node.generator === 'envoy' ? 'sidecar' : 'grpc';
  return `${prefix}~${node.instanceIp ?? DEFAULT_INSTANCE_IP}~${node.instanceId ?? taskNameOf(node.marathonId)}`;
}

/** A directory as the bootstraps write it: no trailing slash. */
export function cleanDir(dir: string): string {
  return dir.replace(/\/+$/, '') || '/';
}

/** node.metadata: strings only, so Envoy and grpc-js carry them unchanged. */
export function nodeMetadata(node: BootstrapNode): Record<string, string> {
  // The xDS server names the files in the TLS contexts it sends: it must know where they are.
  const certsDir = node.certMode === 'files' && node.certsDir !== undefined ? cleanDir(node.certsDir) : CERTS_MOUNT_PATH;
  return {
    [META.marathonId]: node.marathonId,
    [META.namespace]: node.identity.namespace,
    [META.serviceAccount]: node.identity.serviceAccount,
    [META.spiffeId]: spiffeId(node.identity),
    [META.trustDomain]: node.identity.trustDomain,
    [META.certMode]: node.certMode,
    [META.capture]: node.capture,
    [META.generator]: node.generator,
    ...(certsDir !== CERTS_MOUNT_PATH && { [META.certsDir]: certsDir }),
  };
}
