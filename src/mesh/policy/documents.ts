/** The Istio policy documents citadel acts on, as typed values (parsed once, at the boundary). */

export const MESH_POLICY = 'MeshPolicy';
export const POLICY = 'Policy';
export const PEER_AUTHENTICATION = 'PeerAuthentication';
export const DESTINATION_RULE = 'DestinationRule';

export const POLICY_KINDS = [MESH_POLICY, POLICY, PEER_AUTHENTICATION, DESTINATION_RULE] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/** The apiVersions Istio serves each kind under. */
export const API_VERSIONS = {
  MeshPolicy: ['authentication.istio.io/v1alpha1'],
  Policy: ['authentication.istio.io/v1alpha1'],
  PeerAuthentication: ['security.istio.io/v1beta1', 'security.istio.io/v1'],
  DestinationRule: ['networking.istio.io/v1alpha3', 'networking.istio.io/v1beta1', 'networking.istio.io/v1'],
} as const satisfies Record<PolicyKind, readonly string[]>;

/** The only MeshPolicy name Istio honours, and the name of a namespace-wide Policy. */
export const DEFAULT_POLICY_NAME = 'default';
export const DEFAULT_NAMESPACE = 'default';

/** PeerAuthentication modes (security.istio.io). UNSET inherits from the enclosing scope. */
export const PEER_MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
export type PeerMtlsMode = (typeof PEER_MTLS_MODES)[number];

/** v1alpha1 MutualTls modes. */
export const ALPHA_MTLS_MODES = ['STRICT', 'PERMISSIVE'] as const;
export type AlphaMtlsMode = (typeof ALPHA_MTLS_MODES)[number];

/** What a server-side sidecar enforces on an inbound port. */
export type EffectiveMtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** DestinationRule ClientTLSSettings modes. */
export const CLIENT_TLS_MODES = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const;
export type ClientTlsMode = (typeof CLIENT_TLS_MODES)[number];

export type Labels = Readonly<Record<string, string>>;

export interface ObjectMeta {
  readonly name: string;
  /** RFC 3339; the store stamps it at first apply. Absent counts as oldest. */
  readonly creationTimestamp?: string;
  readonly labels?: Labels;
  readonly annotations?: Labels;
}

export interface NamespacedMeta extends ObjectMeta {
  readonly namespace: string;
}

/** A v1alpha1 PortSelector: one of number or name. */
export type PortSelector = { readonly number: number } | { readonly name: string };

export interface TargetSelector {
  /** A Marathon app/pod id (/prod/payments/api) or its Mesos-DNS name (api-payments-prod.marathon.mesos). */
  readonly name: string;
  /** Empty: every port of the target. */
  readonly ports: readonly PortSelector[];
}

export interface AuthenticationSpec {
  readonly targets: readonly TargetSelector[];
  /** The first mtls peer method; absent when the policy has no mtls peer (no peer authentication). */
  readonly peerMtls?: AlphaMtlsMode;
}

export interface MeshPolicy {
  readonly kind: typeof MESH_POLICY;
  readonly apiVersion: (typeof API_VERSIONS)['MeshPolicy'][number];
  readonly metadata: ObjectMeta;
  /** Never has targets. */
  readonly spec: AuthenticationSpec;
}

export interface Policy {
  readonly kind: typeof POLICY;
  readonly apiVersion: (typeof API_VERSIONS)['Policy'][number];
  readonly metadata: NamespacedMeta;
  /** No targets only when named `default` (namespace-wide). */
  readonly spec: AuthenticationSpec;
}

export interface PortMtls {
  readonly port: number;
  readonly mode: PeerMtlsMode;
}

export interface PeerAuthenticationSpec {
  /** matchLabels; absent (or empty in the source) means namespace-wide, or mesh-wide in the root namespace. */
  readonly selector?: Labels;
  readonly mtls: PeerMtlsMode;
  /** Sorted by port; only with a selector. */
  readonly portLevelMtls: readonly PortMtls[];
}

export interface PeerAuthentication {
  readonly kind: typeof PEER_AUTHENTICATION;
  readonly apiVersion: (typeof API_VERSIONS)['PeerAuthentication'][number];
  readonly metadata: NamespacedMeta;
  readonly spec: PeerAuthenticationSpec;
}

export interface ClientTlsSettings {
  readonly mode: ClientTlsMode;
  /** File paths in the client sidecar, for SIMPLE and MUTUAL. */
  readonly clientCertificate?: string;
  readonly privateKey?: string;
  readonly caCertificates?: string;
  readonly subjectAltNames?: readonly string[];
  readonly sni?: string;
}

export interface PortTls {
  readonly port: number;
  readonly tls: ClientTlsSettings;
}

export interface DestinationRuleSpec {
  /** A Marathon id, a DNS name, `*.suffix` or `*`. */
  readonly host: string;
  /** trafficPolicy.tls */
  readonly tls?: ClientTlsSettings;
  /** trafficPolicy.portLevelSettings that carry tls, sorted by port. */
  readonly portLevelTls: readonly PortTls[];
}

export interface DestinationRule {
  readonly kind: typeof DESTINATION_RULE;
  readonly apiVersion: (typeof API_VERSIONS)['DestinationRule'][number];
  readonly metadata: NamespacedMeta;
  readonly spec: DestinationRuleSpec;
}

export type PolicyDocument = MeshPolicy | Policy | PeerAuthentication | DestinationRule;

/** Namespace of a document; undefined for the cluster-scoped MeshPolicy. */
export function namespaceOf(doc: PolicyDocument): string | undefined {
  return doc.kind === MESH_POLICY ? undefined : doc.metadata.namespace;
}

/** `Kind/namespace/name` (`MeshPolicy/default`): what makes a document unique in a store. */
export function policyKey(doc: PolicyDocument): string {
  const ns = namespaceOf(doc);
  return ns === undefined ? `${doc.kind}/${doc.metadata.name}` : `${doc.kind}/${ns}/${doc.metadata.name}`;
}

/** `ns/name`, or `name` for a MeshPolicy: how messages name a document. */
export function displayName(doc: PolicyDocument): string {
  const ns = namespaceOf(doc);
  return ns === undefined ? doc.metadata.name : `${ns}/${doc.metadata.name}`;
}

/** The document stamped with a creation time (the store does it at first apply and keeps it after). */
export function withCreationTimestamp<D extends PolicyDocument>(doc: D, at: Date): D {
  return { ...doc, metadata: { ...doc.metadata, creationTimestamp: at.toISOString() } };
}
