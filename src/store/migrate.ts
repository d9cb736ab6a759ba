/**
 * `citadel store migrate`: copies the CA secret and every secret from one store to another
 * (file: -> zk:// when a CA gains replicas). Running it again changes nothing: equal secrets are
 * skipped, and a target that holds a different CA root is refused before anything is written.
 * Join tokens are not copied (they are short-lived; create new ones).
 */
import { UserError } from '../common/errors';
import type { CaSecret, Secret, Store, StoredSecret } from './store';

export interface MigrateResult {
  copied: number;
  unchanged: number;
  ca: 'copied' | 'unchanged' | 'absent';
}

const BATCH = 64;

export async function migrateStore(from: Store, to: Store, progress: (line: string) => void = () => {}): Promise<MigrateResult> {
  // Read the source completely (opening every key) and check the target's root before writing.
  const ca = await from.getCaSecret();
  const secrets = await from.listSecrets();
  const targetCa = await to.getCaSecret();
  if (ca && targetCa && !sameCa(ca, targetCa)) {
    throw new UserError(`${to.url} already holds a different CA root than ${from.url}; migrating would mix two roots: choose an empty target`);
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
    if (n === secrets.length || n % 500 < BATCH) progress(`${n}/${secrets.length} secrets: ${copied} copied, ${unchanged} unchanged`);
  }
  return { copied, unchanged, ca: caResult };
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

function canonical(value: object): string {
  return JSON.stringify(Object.fromEntries(Object.entries(value).sort(([x], [y]) => x.localeCompare(y))));
}
