/** Istio authentication policy for Marathon: parse, store form, output, and resolution per workload and destination. */
export type {
  AlphaMtlsMode,
  AuthenticationSpec,
  ClientTlsMode,
  ClientTlsSettings,
  DestinationRule,
  DestinationRuleSpec,
  EffectiveMtlsMode,
  Labels,
  MeshPolicy,
  NamespacedMeta,
  ObjectMeta,
  PeerAuthentication,
  PeerAuthenticationSpec,
  PeerMtlsMode,
  Policy,
  PolicyDocument,
  PolicyKind,
  PortMtls,
  PortSelector,
  PortTls,
  TargetSelector,
} from './documents';
export { API_VERSIONS, POLICY_KINDS, displayName, namespaceOf, policyKey, withCreationTimestamp } from './documents';
export { PolicyError } from './policy-error';
export { parsePolicySources, parsePolicyText, type ParsedPolicies, type PolicySource } from './parse';
export { loadPolicyFiles } from './loader';
export { fromCanonical, toCanonical, type CanonicalPolicy, type JsonObject, type JsonValue } from './canonical';
export { formatPolicyJson, formatPolicyYaml } from './format';
export {
  DEFAULT_ROOT_NAMESPACE,
  resolvePeerMtls,
  type PolicyWorkload,
  type ResolveOptions,
  type WorkloadPort,
} from './peer-mtls';
export { resolveDestinationTls, type DestinationTls, type TlsDestination } from './destination-tls';
