import { Command, Option } from 'commander';
import { formatDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { formatPolicyJson, formatPolicyYaml, loadPolicyFiles, namespaceOf, PolicyError, type PolicyDocument, type PolicyKind } from '../../mesh/policy';
import { checkNamespace } from '../../pki/identity';
import { applyPolicies, deletePolicies, describeRef, readPolicies, refOf, type PolicyRef } from '../../store/policy-apply';
import type { Store } from '../../store/store';
import { addStoreOption, openStoreFromFlags } from '../options';
import type { RegisterCommand } from './index';

const say = (line: string) => process.stdout.write(`${line}\n`);
const warn = (line: string) => process.stderr.write(`${line}\n`);

/** Kinds as kubectl and istioctl take them: any case, singular, plural, short name. */
const KIND_NAMES: Readonly<Record<string, PolicyKind>> = {
  peerauthentication: 'PeerAuthentication',
  peerauthentications: 'PeerAuthentication',
  pa: 'PeerAuthentication',
  destinationrule: 'DestinationRule',
  destinationrules: 'DestinationRule',
  dr: 'DestinationRule',
  policy: 'Policy',
  policies: 'Policy',
  meshpolicy: 'MeshPolicy',
  meshpolicies: 'MeshPolicy',
};

const DEFAULT_NAMESPACE = 'default';
const OUTPUTS = ['table', 'yaml', 'json'] as const;

interface StoreFlags {
  store: string;
  kekFile?: string;
}

export function parseKind(text: string): PolicyKind {
  const kind = KIND_NAMES[text.toLowerCase()];
  if (kind === undefined) throw new UserError(`unknown kind "${text}"; use peerauthentication (pa), destinationrule (dr), policy or meshpolicy`);
  return kind;
}

function namespaceFlag(ns: string | undefined): string | undefined {
  if (ns === undefined) return undefined;
  if (checkNamespace(ns) !== undefined) throw new UserError(`-n: "${ns}" is not a namespace (a DNS label: lowercase letters, digits and '-')`);
  return ns;
}

/** Policy files read and parsed; a problem in any: each on its own line, exit 2, and nothing else happens. */
async function loadFiles(files: readonly string[], verb: 'apply' | 'delete'): Promise<PolicyDocument[] | undefined> {
  if (files.length === 0) throw new UserError(`policy ${verb} needs -f FILE|DIR`);
  try {
    const { documents, warnings } = await loadPolicyFiles(files);
    if (verb === 'apply') for (const w of warnings) warn(`warning: ${w}`); // delete reads only the names
    return [...documents];
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    for (const line of err.message.split('\n')) warn(`citadel: ${line}`);
    warn(`citadel: nothing ${verb === 'apply' ? 'applied' : 'deleted'} (${err.problems.length} error${err.problems.length === 1 ? '' : 's'})`);
    process.exitCode = 2;
    return undefined;
  }
}

async function withStore<T>(o: StoreFlags, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStoreFromFlags(o);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const collect = (value: string, previous: string[]) => [...previous, value];

export const registerPolicy: RegisterCommand = (program: Command) => {
  const policy = program.command('policy').description('keep Istio authentication policy (PeerAuthentication, DestinationRule, Policy, MeshPolicy) in the store, which every replica serves');

  addStoreOption(policy.command('apply'))
    .description('create or replace the documents of policy files (YAML or JSON; a directory: its *.yaml, *.yml, *.json); any error: nothing applied')
    .option('-f, --filename <path>', 'a policy file or directory (repeatable)', collect, [])
    .option('--dry-run', 'show what would change; write nothing')
    .action(async (o: StoreFlags & { filename: string[]; dryRun?: boolean }) => {
      const documents = await loadFiles(o.filename, 'apply');
      if (documents === undefined) return;
      const result = await withStore(o, (store) => applyPolicies(store, documents, { dryRun: o.dryRun }));
      const suffix = o.dryRun ? ' (dry run)' : '';
      for (const a of result.applied) say(`${describeRef(refOf(a.document))} ${a.outcome}${suffix}`);
    });

  addStoreOption(policy.command('get [kind] [name]'))
    .description('show the stored policy: kind peerauthentication (pa), destinationrule (dr), policy, meshpolicy; all kinds when omitted')
    .option('-n, --namespace <ns>', `the namespace (default ${DEFAULT_NAMESPACE}); a MeshPolicy has none and always shows`)
    .option('-A, --all-namespaces', 'every namespace')
    .addOption(new Option('-o, --output <format>', 'table, or yaml/json that policy apply takes back').choices([...OUTPUTS]).default('table'))
    .action(async (kindArg: string | undefined, name: string | undefined, o: StoreFlags & { namespace?: string; allNamespaces?: boolean; output: (typeof OUTPUTS)[number] }) => {
      if (o.allNamespaces && o.namespace !== undefined) throw new UserError('give -n NS or -A, not both');
      const kind = kindArg === undefined ? undefined : parseKind(kindArg);
      const namespace = o.allNamespaces ? undefined : (namespaceFlag(o.namespace) ?? DEFAULT_NAMESPACE);
      await withStore(o, async (store) => {
        const { documents } = await readPolicies(store);
        const shown = documents.filter((d) => {
          const ns = namespaceOf(d);
          return (kind === undefined || d.kind === kind) && (name === undefined || d.metadata.name === name) && (namespace === undefined || ns === undefined || ns === namespace);
        });
        if (kind !== undefined && name !== undefined && shown.length === 0) {
          throw new UserError(`there is no ${describeWanted(kind, namespace, name)} in ${store.url}; \`citadel policy get -A\` lists what there is`);
        }
        if (o.output === 'yaml') process.stdout.write(formatPolicyYaml(shown));
        else if (o.output === 'json') process.stdout.write(formatPolicyJson(shown));
        else if (shown.length === 0) warn(`no policies${namespace === undefined ? '' : ` in namespace ${namespace}`} in ${store.url}`);
        else process.stdout.write(formatTable(shown, Date.now()));
      });
    });

  addStoreOption(policy.command('delete [kind] [name]'))
    .description('delete stored documents: KIND NAME [-n NS], or those a policy file names (-f); one that is not there: nothing deleted')
    .option('-n, --namespace <ns>', `the namespace (default ${DEFAULT_NAMESPACE}; a MeshPolicy has none)`)
    .option('-f, --filename <path>', 'delete the documents this policy file or directory holds (repeatable)', collect, [])
    .action(async (kindArg: string | undefined, name: string | undefined, o: StoreFlags & { namespace?: string; filename: string[] }) => {
      let refs: PolicyRef[];
      if (o.filename.length > 0) {
        if (kindArg !== undefined) throw new UserError('give KIND NAME or -f FILE, not both');
        const documents = await loadFiles(o.filename, 'delete');
        if (documents === undefined) return;
        refs = documents.map(refOf);
      } else {
        if (kindArg === undefined || name === undefined) throw new UserError('policy delete needs KIND NAME (e.g. pa api -n prod) or -f FILE');
        const kind = parseKind(kindArg);
        const namespace = namespaceFlag(o.namespace) ?? DEFAULT_NAMESPACE;
        refs = [kind === 'MeshPolicy' ? { kind, name } : { kind, namespace, name }];
      }
      const result = await withStore(o, (store) => deletePolicies(store, refs));
      for (const ref of result.deleted) say(`${describeRef(ref)} deleted`);
    });
};

/** `peerauthentication prod/api`, or `... api in any namespace` with -A. */
function describeWanted(kind: PolicyKind, namespace: string | undefined, name: string): string {
  if (kind === 'MeshPolicy') return describeRef({ kind, name });
  return namespace === undefined ? `${describeRef({ kind, name })} in any namespace` : describeRef({ kind, namespace, name });
}

/** kubectl's columns for the mesh: KIND NAMESPACE NAME MODE AGE. */
function formatTable(docs: readonly PolicyDocument[], now: number): string {
  const rows = [['KIND', 'NAMESPACE', 'NAME', 'MODE', 'AGE'], ...docs.map((d) => [d.kind, namespaceOf(d) ?? '-', d.metadata.name, modeOf(d), ageOf(d, now)])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join('   ')).join('\n') + '\n';
}

/** The mode a document sets, then its port-level ones (`UNSET 8081=DISABLE`). */
function modeOf(d: PolicyDocument): string {
  switch (d.kind) {
    case 'MeshPolicy':
    case 'Policy':
      return d.spec.peerMtls ?? 'DISABLE'; // no mtls peer: no peer authentication
    case 'PeerAuthentication':
      return [d.spec.mtls, ...d.spec.portLevelMtls.map((p) => `${p.port}=${p.mode}`)].join(' ');
    case 'DestinationRule':
      return [d.spec.tls?.mode ?? '-', ...d.spec.portLevelTls.map((p) => `${p.port}=${p.tls.mode}`)].join(' ');
  }
}

function ageOf(d: PolicyDocument, now: number): string {
  const created = d.metadata.creationTimestamp === undefined ? NaN : Date.parse(d.metadata.creationTimestamp);
  return Number.isNaN(created) ? '-' : formatDuration(Math.max(0, now - created));
}
