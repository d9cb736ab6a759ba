/**
 * Which namespaces (and service accounts) the workloads under a Marathon path may claim with the
 * labels istio.io/namespace and istio.io/service-account. Marathon authorizes writes by path
 * (DC/OS ACLs on groups), so a path is what a writer owns; a label must not take another team's
 * identity. Without an entry for its path, a workload's label may only repeat the namespace its
 * path implies (the first segment; `default` for a one-segment id), and any service account.
 */
import { NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL, workloadIdentityOf } from '../marathon/workload';
import { absoluteMarathonId } from '../mesh/bootstrap/identity';
import { isJsonObject, type JsonValue } from '../common/json';
import { checkNamespace, checkServiceAccount } from '../pki/identity';
import { parseConfigText } from './config';

/** Names allowed under a path prefix; `any` allows every valid name. */
export type Allowed = { any: true } | { any: false; names: readonly string[] };

export interface NamespaceGrant {
  /** an absolute Marathon path (`/prod/payments`), or `/` for every workload */
  prefix: string;
  namespaces: Allowed;
  /** without a list in the file, any service account */
  serviceAccounts: Allowed;
}

/** A claim a workload may not make: the label's JSON path and why. */
export interface ClaimProblem {
  path: string;
  error: string;
}

export class NamespaceMap {
  /** longest prefix first, so the most specific grant is found first */
  private readonly grants: NamespaceGrant[];

  constructor(grants: NamespaceGrant[] = []) {
    this.grants = [...grants].sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The grant of the longest prefix that contains `id` (whole segments), if any. */
  grantFor(id: string): NamespaceGrant | undefined {
    return this.grants.find((g) => g.prefix === '/' || id === g.prefix || id.startsWith(`${g.prefix}/`));
  }

  /**
   * The claims of a workload (`id` absolute, its labels) that its path does not allow; `at` is
   * the workload's JSON path in the request (`/apps(0)`, or empty).
   */
  claimProblems(kind: 'app' | 'pod', id: string, labels: Record<string, string>, at: string): ClaimProblem[] {
    const problems: ClaimProblem[] = [];
    const grant = this.grantFor(id);
    const ns = labels[NAMESPACE_LABEL];
    if (ns !== undefined) {
      const implied = workloadIdentityOf(kind, id, {});
      const impliedNs = 'error' in implied ? undefined : implied.namespace;
      if (ns !== impliedNs && !allows(grant?.namespaces, ns)) {
        const may = [impliedNs, ...(grant && !grant.namespaces.any ? grant.namespaces.names : [])].filter((n): n is string => n !== undefined);
        problems.push({
          path: `${at}/labels/${NAMESPACE_LABEL}`,
          error: `namespace "${ns}" may not be claimed by ${id}: ${may.length ? `its path allows ${[...new Set(may)].map((n) => `"${n}"`).join(', ')}` : 'its path allows no namespace'}${grant ? ` (namespace map entry ${grant.prefix})` : ' (the namespace map has no entry for it)'}; move it under a group of that namespace or ask for an entry in the namespace map`,
        });
      }
    }
    const sa = labels[SERVICE_ACCOUNT_LABEL];
    if (sa !== undefined && grant && !grant.serviceAccounts.any && !grant.serviceAccounts.names.includes(sa)) {
      problems.push({
        path: `${at}/labels/${SERVICE_ACCOUNT_LABEL}`,
        error: `service account "${sa}" may not be claimed by ${id}: under ${grant.prefix} the namespace map allows ${grant.serviceAccounts.names.map((n) => `"${n}"`).join(', ') || 'none'}`,
      });
    }
    return problems;
  }
}

function allows(allowed: Allowed | undefined, name: string): boolean {
  return allowed !== undefined && (allowed.any || allowed.names.includes(name));
}

/**
 * Parses a namespace map (JSON, or YAML for a .yaml/.yml name): path prefix -> the namespaces
 * its workloads may claim, as a list, `"*"` for any, or `{namespaces, serviceAccounts}`:
 *
 *   { "/prod": ["prod", "prod-canary"],
 *     "/teams/payments": { "namespaces": ["payments"], "serviceAccounts": ["api", "worker"] },
 *     "/platform": "*" }
 */
export function parseNamespaceMapFile(text: string, source: string): NamespaceMap {
  const json = parseConfigText(text, source);
  const fail = (at: string, what: string): never => {
    throw new Error(`${source}: ${at}: ${what}`);
  };
  if (!isJsonObject(json)) return fail('/', 'expected an object of Marathon path prefix -> namespaces');
  const grants: NamespaceGrant[] = [];
  const seen = new Set<string>();
  for (const [key, value] of Object.entries(json)) {
    const at = `/${key}`;
    let prefix = '/';
    if (key !== '/') {
      if (!key.startsWith('/')) fail(at, `"${key}" must be an absolute Marathon path such as /prod/payments`);
      try {
        prefix = absoluteMarathonId(key);
      } catch (err) {
        fail(at, (err as Error).message);
      }
    }
    if (seen.has(prefix)) fail(at, `${prefix} is listed twice`);
    seen.add(prefix);
    if (isJsonObject(value)) {
      for (const k of Object.keys(value)) if (k !== 'namespaces' && k !== 'serviceAccounts') fail(`${at}/${k}`, 'unknown key (known: namespaces, serviceAccounts)');
      if (value.namespaces === undefined) fail(at, 'needs "namespaces"');
      grants.push({
        prefix,
        namespaces: names(value.namespaces, `${at}/namespaces`, checkNamespace, fail),
        serviceAccounts: value.serviceAccounts === undefined ? { any: true } : names(value.serviceAccounts, `${at}/serviceAccounts`, checkServiceAccount, fail),
      });
    } else {
      grants.push({ prefix, namespaces: names(value, at, checkNamespace, fail), serviceAccounts: { any: true } });
    }
  }
  return new NamespaceMap(grants);
}

function names(v: JsonValue, at: string, check: (name: string) => string | undefined, fail: (at: string, what: string) => never): Allowed {
  if (v === '*') return { any: true };
  if (!Array.isArray(v)) return fail(at, 'expected a list of names or "*"');
  return {
    any: false,
    names: v.map((n, i) => {
      if (typeof n !== 'string') return fail(`${at}(${i})`, 'expected a name');
      const problem = check(n);
      if (problem) fail(`${at}(${i})`, problem);
      return n;
    }),
  };
}
