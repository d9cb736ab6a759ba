import { spiffeId, type WorkloadIdentity } from '../../pki/identity';
import { META, type CaptureMode, type CertMode, type ProxyGenerator } from './contract';

/** Who a proxy (Envoy sidecar or proxyless gRPC service) is: what the xDS server learns from its node. */
export interface ProxyNode {
  identity: WorkloadIdentity;
  /** the Marathon app or pod id, absolute (`/prod/payments/api`) */
  marathonId: string;
  certMode: CertMode;
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
export function nodeId(node: ProxyNode): string {
  const prefix = node.generator === 'envoy' ? 'sidecar' : 'grpc';
  return `${prefix}~${node.instanceIp ?? DEFAULT_INSTANCE_IP}~${node.instanceId ?? taskNameOf(node.marathonId)}`;
}

/** node.metadata: strings only, so Envoy and grpc-js carry them unchanged. */
export function nodeMetadata(node: ProxyNode): Record<string, string> {
  return {
    [META.marathonId]: node.marathonId,
    [META.namespace]: node.identity.namespace,
    [META.serviceAccount]: node.identity.serviceAccount,
    [META.spiffeId]: spiffeId(node.identity),
    [META.trustDomain]: node.identity.trustDomain,
    [META.certMode]: node.certMode,
    [META.capture]: node.capture,
    [META.generator]: node.generator,
  };
}
