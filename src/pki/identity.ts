/** SPIFFE identities of workloads and Mesos agents, and the naming rules they obey. */

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A Kubernetes-style namespace: a DNS label, at most 63 characters. */
export function checkNamespace(ns: string): string | undefined {
  if (ns.length === 0 || ns.length > 63 || !DNS_LABEL.test(ns)) {
    return `namespace "${ns}" must be a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)`;
  }
  return undefined;
}

/** A service account: a DNS subdomain, at most 253 characters. */
export function checkServiceAccount(sa: string): string | undefined {
  if (sa.length === 0 || sa.length > 253 || !sa.split('.').every((l) => l.length <= 63 && DNS_LABEL.test(l))) {
    return `service account "${sa}" must be a DNS subdomain (DNS labels joined by dots, at most 253 characters)`;
  }
  return undefined;
}

/** A Mesos agent hostname as it appears in a node identity. */
export function checkHost(host: string): string | undefined {
  if (host.length === 0 || host.length > 253 || !/^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/.test(host)) {
    return `host "${host}" is not a valid hostname`;
  }
  return undefined;
}

/**
 * A workload's identity within the trust domain: its namespace and service account. The one
 * type for "which identity" across the view, the feeds, the agent, the controller and the certs
 * directory; `accountKey` builds its map key and `parseAccountKey` reads it back.
 */
export interface AccountRef {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** `<namespace>/<service account>`: neither part can hold a slash. */
export function accountKey(a: AccountRef): string {
  return `${a.namespace}/${a.serviceAccount}`;
}

export function parseAccountKey(key: string): AccountRef {
  const slash = key.indexOf('/');
  if (slash <= 0 || slash === key.length - 1) throw new Error(`"${key}" is not <namespace>/<service account>`);
  return { namespace: key.slice(0, slash), serviceAccount: key.slice(slash + 1) };
}

/** Why this namespace and account cannot name an identity, or undefined. */
export function checkAccount(a: AccountRef): string | undefined {
  return checkNamespace(a.namespace) ?? checkServiceAccount(a.serviceAccount);
}

export interface WorkloadIdentity extends AccountRef {
  kind: 'workload';
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export interface NodeIdentity {
  kind: 'node';
  trustDomain: string;
  host: string;
}

export type Identity = WorkloadIdentity | NodeIdentity;

export function workloadIdentity(trustDomain: string, namespace: string, serviceAccount: string): WorkloadIdentity {
  const problem = checkNamespace(namespace) ?? checkServiceAccount(serviceAccount) ?? checkTrustDomain(trustDomain);
  if (problem) throw new Error(problem);
  return { kind: 'workload', trustDomain, namespace, serviceAccount };
}

export function nodeIdentity(trustDomain: string, host: string): NodeIdentity {
  const problem = checkHost(host) ?? checkTrustDomain(trustDomain);
  if (problem) throw new Error(problem);
  return { kind: 'node', trustDomain, host };
}

export function checkTrustDomain(td: string): string | undefined {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(td) || td.length > 255) {
    return `trust domain "${td}" must be lowercase letters, digits, dots and dashes`;
  }
  return undefined;
}

/** The SPIFFE ID URI of an identity. */
export function spiffeId(id: Identity): string {
  return id.kind === 'workload'
    ? `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`
    : `spiffe://${id.trustDomain}/mesos-agent/${id.host}`;
}

/** Parses a SPIFFE ID of one of our two shapes; throws with the reason otherwise. */
export function parseSpiffeId(uri: string): Identity {
  const m = /^spiffe:\/\/([^/]+)\/(.*)$/.exec(uri);
  if (!m) throw new Error(`"${uri}" is not a SPIFFE ID (spiffe://<trust-domain>/<path>)`);
  const [, td, path] = m;
  const parts = path.split('/');
  if (parts.length === 4 && parts[0] === 'ns' && parts[2] === 'sa') return workloadIdentity(td, parts[1], parts[3]);
  if (parts.length === 2 && parts[0] === 'mesos-agent') return nodeIdentity(td, parts[1]);
  throw new Error(`"${uri}" is neither a workload (/ns/<ns>/sa/<sa>) nor a node (/mesos-agent/<host>) identity`);
}

const SECRET_PREFIX = 'istio.';

/** Citadel's secret name for a service account: `istio.<sa>`. */
export function secretName(serviceAccount: string): string {
  return `${SECRET_PREFIX}${serviceAccount}`;
}

/** The service account a Citadel secret name belongs to, or undefined when it is not `istio.<valid sa>`. */
export function accountOfSecretName(name: string): string | undefined {
  if (!name.startsWith(SECRET_PREFIX)) return undefined;
  const sa = name.slice(SECRET_PREFIX.length);
  return checkServiceAccount(sa) === undefined ? sa : undefined;
}

/** The one name check of a stored secret's place: a namespace (DNS label) and `istio.<service account>`. */
export function checkSecretRef(namespace: string, name: string): string | undefined {
  return checkNamespace(namespace) ?? (accountOfSecretName(name) === undefined ? `secret name "${name}" must be istio.<service account> with a DNS-subdomain account` : undefined);
}

/** Citadel's file names, in a secret and under the sidecar's /etc/certs. */
export const CITADEL_FILES = { certChain: 'cert-chain.pem', key: 'key.pem', root: 'root-cert.pem' } as const;
