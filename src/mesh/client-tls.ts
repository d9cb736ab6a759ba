/**
 * What TLS a client originates towards one destination port: the DestinationRule Istio would
 * pick, else auto mTLS, never TLS to a sidecar that takes plaintext only. One decision for Envoy
 * clusters and proxyless gRPC clusters alike.
 */
import { spiffeId } from '../pki/identity';
import type { MeshService, ServicePort } from './model';
import { meshServerName } from './names';
import { resolveDestinationTls, type EffectiveMtlsMode, type PolicyDocument } from './policy';

export type ClientTls =
  | { readonly kind: 'plaintext' }
  /** The workload's citadel certificate, checking the mesh root and one of `subjectAltNames` (URI SANs). */
  | { readonly kind: 'istio-mutual'; readonly subjectAltNames: readonly string[]; readonly sni: string }
  /** A DestinationRule's own files (paths in the client sidecar); no caCertificates means the mesh root. */
  | {
      readonly kind: 'simple' | 'mutual';
      readonly caCertificates?: string;
      readonly clientCertificate?: string;
      readonly privateKey?: string;
      readonly subjectAltNames: readonly string[];
      readonly sni: string;
      /** `ns/name` of the rule, for warnings. */
      readonly rule: string;
    };

export const PLAINTEXT: ClientTls = Object.freeze({ kind: 'plaintext' });

/** The destination's SPIFFE ID: what an ISTIO_MUTUAL client expects in the server's certificate. */
export function serviceSpiffeId(trustDomain: string, service: MeshService): string {
  return spiffeId({ kind: 'workload', trustDomain, namespace: service.namespace, serviceAccount: service.serviceAccount });
}

export interface ClientTlsQuery {
  readonly policies: readonly PolicyDocument[];
  readonly trustDomain: string;
  readonly clientNamespace: string;
  readonly destination: MeshService;
  readonly port: ServicePort;
  /** resolvePeerMtls for the destination at this port. */
  readonly destinationMode: EffectiveMtlsMode;
}

/**
 * 1. A destination whose sidecar resolves DISABLE at the port takes plaintext only: plaintext,
 *    whatever a rule says (a destination without a sidecar enforces no mode, so its mode is not consulted).
 * 2. The DestinationRule's tls for the port (resolveDestinationTls), if any.
 * 3. Else auto mTLS, as Istio: ISTIO_MUTUAL exactly when the destination has a sidecar.
 */
export function decideClientTls(q: ClientTlsQuery): ClientTls {
  const { destination: d, port } = q;
  if (d.hasSidecar && q.destinationMode === 'DISABLE') return PLAINTEXT;
  const sni = meshServerName(port.port, d.dnsName);
  const rule = resolveDestinationTls(q.policies, { host: d.dnsName, aliases: [d.marathonId], port: port.port, clientNamespace: q.clientNamespace });
  if (rule === undefined) return d.hasSidecar ? { kind: 'istio-mutual', subjectAltNames: [serviceSpiffeId(q.trustDomain, d)], sni } : PLAINTEXT;
  const sans = rule.subjectAltNames !== undefined && rule.subjectAltNames.length > 0 ? rule.subjectAltNames : undefined;
  switch (rule.mode) {
    case 'DISABLE':
      return PLAINTEXT;
    case 'ISTIO_MUTUAL':
      return { kind: 'istio-mutual', subjectAltNames: sans ?? [serviceSpiffeId(q.trustDomain, d)], sni: rule.sni ?? sni };
    case 'SIMPLE':
    case 'MUTUAL':
      return {
        kind: rule.mode === 'SIMPLE' ? 'simple' : 'mutual',
        ...(rule.caCertificates !== undefined && { caCertificates: rule.caCertificates }),
        ...(rule.mode === 'MUTUAL' && { clientCertificate: rule.clientCertificate, privateKey: rule.privateKey }),
        subjectAltNames: sans ?? [],
        // The app's own TLS server: by default it is dialled by its Mesos-DNS name.
        sni: rule.sni ?? d.dnsName,
        rule: `${rule.rule.namespace}/${rule.rule.name}`,
      };
  }
}

/** A canonical text of the decision: equal texts make equal clusters. */
export function clientTlsKey(tls: ClientTls): string {
  return JSON.stringify(tls);
}
