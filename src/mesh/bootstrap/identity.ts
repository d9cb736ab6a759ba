import { NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL, workloadIdentityOf } from '../../marathon/workload';
import { checkTrustDomain, workloadIdentity, type WorkloadIdentity } from '../../pki/identity';

/**
 * The identity of the Marathon app or pod `marathonId`, as ARCHITECTURE.md's identity model
 * derives it (namespace from the first id segment, account `default`), with explicit overrides
 * standing in for the labels istio.io/namespace and istio.io/service-account. Throws with a
 * one-line reason.
 */
export function proxyIdentityOf(
  marathonId: string,
  trustDomain: string,
  overrides: { namespace?: string; serviceAccount?: string } = {},
): WorkloadIdentity {
  const tdProblem = checkTrustDomain(trustDomain);
  if (tdProblem) throw new Error(tdProblem);
  const labels: Record<string, string> = {};
  if (overrides.namespace !== undefined) labels[NAMESPACE_LABEL] = overrides.namespace;
  if (overrides.serviceAccount !== undefined) labels[SERVICE_ACCOUNT_LABEL] = overrides.serviceAccount;
  const found = workloadIdentityOf('pod', marathonId, labels);
  if ('error' in found) throw new Error(found.error);
  return workloadIdentity(trustDomain, found.namespace, found.serviceAccount);
}

/** One segment of a Marathon path id (API-NOTES.md, "Definitions"). */
const ID_SEGMENT = /^(([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$/;

/**
 * A Marathon app or pod id made absolute: a relative one is relative to the group `base`
 * (`api` in /prod -> `/prod/api`, `../db` -> `/db`). Throws saying what is wrong.
 */
export function absoluteMarathonId(id: string, base = '/'): string {
  const segments: string[] = [];
  for (const s of (id.startsWith('/') ? id : `${base}/${id}`).split('/')) {
    if (s === '..') segments.pop();
    else if (s !== '' && s !== '.') segments.push(s);
  }
  if (segments.length === 0) throw new Error(`Marathon id "${id}" has no path segment`);
  const bad = segments.find((s) => !ID_SEGMENT.test(s));
  if (bad !== undefined) throw new Error(`Marathon id "${id}": segment "${bad}" must be lowercase letters, digits, dashes and dots`);
  return `/${segments.join('/')}`;
}
