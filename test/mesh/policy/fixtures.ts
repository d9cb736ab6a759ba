/** Typed policy documents for table tests, built directly so each row says exactly what it holds. */
import type {
  AlphaMtlsMode,
  ClientTlsSettings,
  DestinationRule,
  Labels,
  MeshPolicy,
  PeerAuthentication,
  PeerMtlsMode,
  Policy,
  PolicyWorkload,
  PortSelector,
} from '../../../src/mesh/policy';

/** Minutes after a fixed epoch, as an RFC 3339 creationTimestamp: `at(1)` is older than `at(2)`. */
export function at(minute: number): string {
  return new Date(Date.UTC(2024, 4, 1, 12, 0, 0) + minute * 60_000).toISOString().replace('.000Z', 'Z');
}

export function meshPolicy(peerMtls: AlphaMtlsMode | undefined, created?: string): MeshPolicy {
  return {
    kind: 'MeshPolicy',
    apiVersion: 'authentication.istio.io/v1alpha1',
    metadata: { name: 'default', ...(created && { creationTimestamp: created }) },
    spec: { targets: [], ...(peerMtls && { peerMtls }) },
  };
}

export function namespacePolicy(namespace: string, peerMtls: AlphaMtlsMode | undefined, created?: string): Policy {
  return {
    kind: 'Policy',
    apiVersion: 'authentication.istio.io/v1alpha1',
    metadata: { name: 'default', namespace, ...(created && { creationTimestamp: created }) },
    spec: { targets: [], ...(peerMtls && { peerMtls }) },
  };
}

export function targetPolicy(
  namespace: string,
  name: string,
  targets: { name: string; ports?: PortSelector[] }[],
  peerMtls: AlphaMtlsMode | undefined,
  created?: string,
): Policy {
  return {
    kind: 'Policy',
    apiVersion: 'authentication.istio.io/v1alpha1',
    metadata: { name, namespace, ...(created && { creationTimestamp: created }) },
    spec: { targets: targets.map((t) => ({ name: t.name, ports: t.ports ?? [] })), ...(peerMtls && { peerMtls }) },
  };
}

export function peerAuthentication(
  namespace: string,
  name: string,
  spec: { selector?: Labels; mtls?: PeerMtlsMode; ports?: Record<number, PeerMtlsMode> },
  created?: string,
): PeerAuthentication {
  return {
    kind: 'PeerAuthentication',
    apiVersion: 'security.istio.io/v1beta1',
    metadata: { name, namespace, ...(created && { creationTimestamp: created }) },
    spec: {
      ...(spec.selector && { selector: spec.selector }),
      mtls: spec.mtls ?? 'UNSET',
      portLevelMtls: Object.entries(spec.ports ?? {})
        .map(([port, mode]) => ({ port: Number(port), mode }))
        .sort((a, b) => a.port - b.port),
    },
  };
}

export function destinationRule(
  namespace: string,
  name: string,
  host: string,
  tls: ClientTlsSettings | undefined,
  portTls: Record<number, ClientTlsSettings> = {},
  created?: string,
): DestinationRule {
  return {
    kind: 'DestinationRule',
    apiVersion: 'networking.istio.io/v1alpha3',
    metadata: { name, namespace, ...(created && { creationTimestamp: created }) },
    spec: {
      host,
      ...(tls && { tls }),
      portLevelTls: Object.entries(portTls)
        .map(([port, t]) => ({ port: Number(port), tls: t }))
        .sort((a, b) => a.port - b.port),
    },
  };
}

/** /prod/payments/api: labels app=api, version=v1; ports 8080 (http) and 9090 (grpc). */
export const api: PolicyWorkload = {
  namespace: 'prod',
  labels: { app: 'api', version: 'v1' },
  serviceNames: ['/prod/payments/api', 'api-payments-prod.marathon.mesos'],
  ports: [
    { number: 8080, name: 'http' },
    { number: 9090, name: 'grpc' },
  ],
};
