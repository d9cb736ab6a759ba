/**
 * `citadel store rekey`: re-seals every private key in a store under a new key-encryption key.
 * Everything is read and opened first; a key that does not open (wrong --old-kek) stops the run
 * before anything is written. Writes are compare-and-set, so a concurrent change is re-read, not lost.
 */
import { ConflictError, UserError } from '../common/errors';
import { kekRing } from './kek';
import type { Kek, Store, StoredSecret } from './store';

/**
 * The KEK to open the store with for a rekey: seals with `newKek`, opens values of `oldKek` and of
 * `newKek` (so a rekey that stopped half way can run again); without `oldKek`, keys must be plain.
 */
export function rekeyKek(newKek: Kek, oldKek?: Kek): Kek {
  return oldKek ? kekRing(newKek, oldKek) : kekRing(newKek);
}

export interface RekeyResult {
  secrets: number;
  caSecret: boolean;
  keyId: string;
}

/** `store` must have been opened with rekeyKek(newKek, oldKek). */
export async function rekeyStore(store: Store, newKeyId: string, progress: (line: string) => void = () => {}): Promise<RekeyResult> {
  // Read (and so open) everything before the first write.
  const ca = await store.getCaSecret();
  const secrets = await store.listSecrets();
  if (ca && !store.replaceCaSecret) {
    throw new UserError(`store ${store.url} cannot rewrite its CA secret, so it cannot be rekeyed; migrate it to a store that can`);
  }
  progress(`all ${secrets.length} secret keys${ca ? ' and the CA key' : ''} open; re-sealing under KEK ${newKeyId}`);
  if (ca) await store.replaceCaSecret!(ca, ca);
  let done = 0;
  for (const secret of secrets) {
    await resealSecret(store, secret);
    progress(`re-sealed ${++done}/${secrets.length} secrets`);
  }
  return { secrets: secrets.length, caSecret: ca !== undefined, keyId: newKeyId };
}

async function resealSecret(store: Store, secret: StoredSecret): Promise<void> {
  let current: StoredSecret | undefined = secret;
  for (let attempt = 0; current && attempt < 5; attempt++) {
    const { version, ...plain } = current;
    try {
      await store.putSecret(plain, version);
      return;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      current = await store.getSecret(secret.namespace, secret.name); // changed meanwhile: re-seal the new one
    }
  }
  if (current) throw new ConflictError(`secret ${secret.namespace}/${secret.name} keeps changing; run rekey again`);
}
