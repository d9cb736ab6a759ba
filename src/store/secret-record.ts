/**
 * How both stores serialise one secret: a JSON document holding the three PEM values of Citadel's
 * secret and its metadata, the private key sealed when the store has a key-encryption key. The
 * ZooKeeper store keeps it as a znode's data (its version is the znode's); the file store keeps it
 * as one file and writes its version into the document.
 */
import { Secret, SECRET_TYPE, SecretMetadata } from './store';

export interface SecretRecord extends Secret {
  v: 1;
  /** The file store's version of this secret (ZooKeeper keeps its own on the znode). */
  version?: number;
}

/** The document for `s`; `s.keyPem` is the key as stored (sealed by the caller if the store seals keys). */
export function encodeSecretRecord(s: Secret, version?: number): string {
  const record: SecretRecord = {
    v: 1,
    ...(version !== undefined ? { version } : {}),
    namespace: s.namespace,
    name: s.name,
    certChainPem: s.certChainPem,
    keyPem: s.keyPem,
    rootCertPem: s.rootCertPem,
    metadata: s.metadata,
  };
  return JSON.stringify(record);
}

/**
 * Parses and checks a document; `where` names it in errors ("znode /citadel/secrets/a/b",
 * "file /var/lib/citadel/secrets/a/b"). The key comes back as stored (sealed or not).
 */
export function decodeSecretRecord(where: string, text: string): SecretRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (!value || typeof value !== 'object') throw new Error(`${where} does not hold JSON written by citadel`);
  const r = value as Partial<SecretRecord>;
  const m = r.metadata as Partial<SecretMetadata> | undefined;
  const strings = [r.namespace, r.name, r.certChainPem, r.keyPem, r.rootCertPem, m?.serviceAccount, m?.spiffeId, m?.notBefore, m?.notAfter, m?.serialNumber, m?.updatedAt];
  if (r.v !== 1 || m?.type !== SECRET_TYPE || strings.some((s) => typeof s !== 'string') || (r.version !== undefined && !Number.isSafeInteger(r.version))) {
    throw new Error(`${where} does not hold a citadel secret (format v1); it was written by something else`);
  }
  return { ...(r as SecretRecord), metadata: { ...(m as SecretMetadata) } };
}
