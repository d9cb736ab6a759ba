/**
 * `citadel store migrate`: copies the CA secret, every secret, the unused join tokens that have
 * not expired, the node records, the evictions and the mesh policy from one store to another
 * (file: -> zk:// when a CA gains replicas; zk:// -> file: and back for a backup and its restore).
 * Running it again changes nothing: equal records are skipped, and a target that holds a different
 * CA root or a different policy set is refused before anything is written. Evictions are copied so
 * that an evicted node's certificate stays refused on the new store.
 */
import { UserError } from '../common/errors';
import type { CaSecret, Secret, Store, StoredSecret } from './store';

export interface MigrateResult {
  copied: number;
  unchanged: number;
  ca: 'copied' | 'unchanged' | 'absent';
  /** Join tokens copied (unused, unexpired, not on the target yet). */
  tokens: number;
  /** Node records and evictions copied. */
  nodes: number;
  evictions: number;
  /** The policy set (PeerAuthentication, DestinationRule, ...): copied whole, or equal already. */
  policies: 'copied' | 'unchanged' | 'absent';
  /** Documents in the policy set copied or found equal. */
  policyDocuments: number;
}

const BATCH = 64;

export async function migrateStore(from: Store, to: Store, progress: (line: string) => void = () => {}, now = Date.now()): Promise<MigrateResult> {
  // Read the source completely (opening every key) and check the target's root before writing.
  const ca = await from.getCaSecret();
  const secrets = await from.listSecrets();
  const targetCa = await to.getCaSecret();
  if (ca && targetCa && !sameCa(ca, targetCa)) {
    throw new UserError(`${to.url} already holds a different CA root than ${from.url}; migrating would mix two roots: choose an empty target`);
  }
  const policies = await from.getPolicies();
  const targetPolicies = await to.getPolicies();
  const samePolicies = canonicalPolicies(policies.documents) === canonicalPolicies(targetPolicies.documents);
  if (policies.documents.length && targetPolicies.documents.length && !samePolicies) {
    throw new UserError(`${to.url} already holds a different mesh policy set (${targetPolicies.documents.length} documents) than ${from.url}; migrating would replace it: choose an empty target, or \`citadel policy delete\` there first`);
  }
  const existing = new Map((await to.listSecrets()).map((s) => [`${s.namespace}/${s.name}`, s]));
  progress(`${from.url}: ${secrets.length} secrets${ca ? ' and the CA secret' : ''}; ${to.url}: ${existing.size} secrets`);

  let caResult: MigrateResult['ca'] = 'absent';
  if (ca) {
    if (targetCa) caResult = 'unchanged';
    else {
      const stored = await to.createCaSecretIfAbsent(ca);
      if (!sameCa(stored, ca)) throw new UserError(`another process stored a different CA root in ${to.url} during the migration; stop it and retry`);
      caResult = 'copied';
    }
  }

  let copied = 0;
  let unchanged = 0;
  for (let i = 0; i < secrets.length; i += BATCH) {
    await Promise.all(
      secrets.slice(i, i + BATCH).map(async (s) => {
        const target = existing.get(`${s.namespace}/${s.name}`);
        if (target && sameSecret(s, target)) {
          unchanged++;
          return;
        }
        const { version: _ignored, ...plain } = s;
        await to.putSecret(plain, target ? target.version : null);
        copied++;
      }),
    );
    const n = Math.min(i + BATCH, secrets.length);
    progress(`${n}/${secrets.length} secrets: ${copied} copied, ${unchanged} unchanged`);
  }

  // Evictions before tokens: a target replica already running must refuse an evicted node first.
  const targetEvictions = new Set((await to.listNodeEvictions()).map((e) => `${e.host}@${Date.parse(e.evictedAt)}`));
  let evictions = 0;
  for (const e of await from.listNodeEvictions()) {
    if (targetEvictions.has(`${e.host}@${Date.parse(e.evictedAt)}`)) continue;
    await to.putNodeEviction(e);
    evictions++;
  }
  const targetNodes = new Map((await to.listNodeRecords()).map((r) => [r.host, r]));
  let nodes = 0;
  for (const r of await from.listNodeRecords()) {
    const t = targetNodes.get(r.host);
    if (t && Date.parse(t.lastContact) >= Date.parse(r.lastContact)) continue;
    await to.putNodeRecord(r);
    nodes++;
  }
  const targetTokens = new Set((await to.listJoinTokens()).map((t) => t.hash));
  let tokens = 0;
  for (const t of await from.listJoinTokens()) {
    if (targetTokens.has(t.hash) || Date.parse(t.expiresAt) <= now) continue;
    await to.putJoinToken(t);
    tokens++;
  }
  if (tokens || nodes || evictions) progress(`${tokens} join tokens, ${nodes} node records, ${evictions} evictions copied`);

  // Policy last: the workloads it turns STRICT have their certificates on the target by now.
  let policyResult: MigrateResult['policies'] = 'absent';
  if (policies.documents.length) {
    if (samePolicies) policyResult = 'unchanged';
    else {
      await to.putPolicies(policies.documents, targetPolicies.version);
      policyResult = 'copied';
    }
  }
  return { copied, unchanged, ca: caResult, tokens, nodes, evictions, policies: policyResult, policyDocuments: policies.documents.length };
}

function sameCa(a: CaSecret, b: CaSecret): boolean {
  return a.caCertPem === b.caCertPem && a.caKeyPem === b.caKeyPem;
}

/** Equal content (the stores' versions differ and do not count). */
export function sameSecret(a: Secret | StoredSecret, b: Secret | StoredSecret): boolean {
  return (
    a.namespace === b.namespace &&
    a.name === b.name &&
    a.certChainPem === b.certChainPem &&
    a.keyPem === b.keyPem &&
    a.rootCertPem === b.rootCertPem &&
    canonical(a.metadata) === canonical(b.metadata)
  );
}

function canonicalPolicies(documents: readonly object[]): string {
  return JSON.stringify(documents);
}

function canonical(value: object): string {
  return JSON.stringify(Object.fromEntries(Object.entries(value).sort(([x], [y]) => x.localeCompare(y))));
}
