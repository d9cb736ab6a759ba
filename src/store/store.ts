/**
 * Where secrets and CA material live. One interface, two implementations: `file:<dir>` (one
 * machine, the embedded default) and `zk://host:port[,host:port]/<chroot>` (several CA replicas).
 *
 * Keys cross this interface in plaintext; a store given a key-encryption key (KEK) encrypts
 * private keys on the way to disk or ZooKeeper and decrypts them on the way back.
 */

import type { CanonicalPolicy } from '../mesh/policy';

/** Citadel's secret type for a workload key and certificate. */
export const SECRET_TYPE = 'istio.io/key-and-cert';

export interface SecretMetadata {
  type: typeof SECRET_TYPE;
  /** Citadel's annotation `istio.io/service-account.name`. */
  serviceAccount: string;
  spiffeId: string;
  /** ISO-8601 validity of the leaf, so a reader need not parse the certificate to list. */
  notBefore: string;
  notAfter: string;
  serialNumber: string;
  /** When this version of the secret was written. */
  updatedAt: string;
}

/** One Citadel secret `istio.<sa>` in a namespace. */
export interface Secret {
  namespace: string;
  /** `istio.<sa>`. */
  name: string;
  certChainPem: string;
  keyPem: string;
  rootCertPem: string;
  metadata: SecretMetadata;
}

/** A secret as read back, with the store's version for compare-and-set. */
export interface StoredSecret extends Secret {
  version: number;
}

/** Citadel's `istio-ca-secret`: the self-signed root, persisted so that a restart never changes it. */
export interface CaSecret {
  caCertPem: string;
  caKeyPem: string;
}

/** A one-time node join token, stored by the hash of its secret part. */
export interface JoinTokenRecord {
  /** hex SHA-256 of the token. */
  hash: string;
  host: string;
  expiresAt: string;
  createdAt: string;
}

/** A Mesos agent node as the CA replicas saw it (`citadel node list`). */
export interface NodeRecord {
  host: string;
  /** Serial (hex) and validity of the node certificate last issued to it. */
  serialNumber: string;
  issuedAt: string;
  notAfter: string;
  /** When a CA replica last heard from it: attestation, renewal, a feed opened, a certificate asked for. */
  lastContact: string;
}

/**
 * `citadel node evict HOST`: every node certificate of `host` issued before `evictedAt` is
 * refused by every replica, and so is every join token for it created before then. A node is
 * admitted again only through a new join token.
 */
export interface NodeEviction {
  host: string;
  /** ISO time, on a whole second (certificate times have second precision). */
  evictedAt: string;
  /** Who or why, as the operator wrote it; shown by `citadel node list`. */
  reason: string;
}

export type StoreEvent =
  | { type: 'put'; namespace: string; name: string }
  | { type: 'delete'; namespace: string; name: string }
  | { type: 'resync' };

/**
 * The mesh's authentication policy: every document in one versioned value, so an apply is all or
 * nothing and every replica serves one consistent set. Version 0: nothing was ever stored.
 */
export interface StoredPolicies {
  documents: CanonicalPolicy[];
  version: number;
}

/** The stored policy set changed (here or in another process); `version` is the newest seen: re-read it. */
export interface PolicyEvent {
  type: 'policies';
  version: number;
}

/**
 * `expectedVersion`: `undefined` writes unconditionally, `null` requires that the secret does
 * not exist, a number requires that version. A mismatch throws ConflictError and writes nothing.
 */
export interface Store {
  /** The URL this store was opened from, with any credentials removed. */
  readonly url: string;

  getSecret(namespace: string, name: string): Promise<StoredSecret | undefined>;
  /** Every secret, or those of one namespace. */
  listSecrets(namespace?: string): Promise<StoredSecret[]>;
  /** Writes the whole secret or nothing; returns the new version. */
  putSecret(secret: Secret, expectedVersion?: number | null): Promise<number>;
  /** Returns false when there was nothing to delete. */
  deleteSecret(namespace: string, name: string, expectedVersion?: number): Promise<boolean>;

  getCaSecret(): Promise<CaSecret | undefined>;
  /** Stores `candidate` unless a CA secret exists; returns the one that is stored (exactly one ever wins). */
  createCaSecretIfAbsent(candidate: CaSecret): Promise<CaSecret>;
  /**
   * Optional: rewrites the CA secret only if it still equals `expected` (ConflictError otherwise).
   * Used by `citadel store rekey` to re-seal the CA key; stores without it cannot be rekeyed.
   */
  replaceCaSecret?(expected: CaSecret, next: CaSecret): Promise<void>;

  putJoinToken(record: JoinTokenRecord): Promise<void>;
  /** Removes and returns the token record atomically: a token can be consumed once. */
  consumeJoinToken(hash: string): Promise<JoinTokenRecord | undefined>;

  /** Every join token not yet used, expired ones included (`citadel token list`; a revoke is consumeJoinToken). */
  listJoinTokens(): Promise<JoinTokenRecord[]>;

  /** Creates or replaces what is known of a node. */
  putNodeRecord(record: NodeRecord): Promise<void>;
  listNodeRecords(): Promise<NodeRecord[]>;
  /** Records an eviction; a later one of the same host supersedes it. */
  putNodeEviction(eviction: NodeEviction): Promise<void>;
  /** The latest eviction of each evicted host. */
  listNodeEvictions(): Promise<NodeEviction[]>;
  /**
   * Calls `listener` with the latest eviction of each host now and whenever they change,
   * including evictions written by other processes (`citadel node evict`); returns the unsubscribe function.
   */
  watchNodeEvictions(listener: (evictions: NodeEviction[]) => void): () => void;
  /** The whole policy set (empty, version 0, before the first put). */
  getPolicies(): Promise<StoredPolicies>;
  /**
   * Replaces the whole policy set if it is still at `expectedVersion` (0: never stored), else
   * throws ConflictError and writes nothing; returns the new version. A set too large to store
   * is a UserError.
   */
  putPolicies(documents: readonly CanonicalPolicy[], expectedVersion: number): Promise<number>;
  /**
   * Calls the listener when the policy set changes, by this process or another. Armed before it
   * returns: a change after the caller's next getPolicies() always produces an event. Several
   * changes may come as one event.
   */
  watchPolicies(listener: (event: PolicyEvent) => void): () => void;

  /** Change notifications (also for writes by other processes where the backend can tell). */
  watch(listener: (event: StoreEvent) => void): () => void;

  /** Joins the election among the processes writing this store; a store with one writer always leads. */
  leaderElection(candidate?: string): Promise<LeaderElection>;
  /** Why the store cannot serve right now (ZooKeeper disconnected), or undefined when it can. */
  unavailableReason(): string | undefined;
  /** Called each time the store is reachable again after it was not; returns the unsubscribe function. */
  onAvailable(listener: () => void): () => void;

  close(): Promise<void>;
}

/** Leadership among a store's writers: only the leader's secret controller writes. */
export interface LeaderElection {
  isLeader(): boolean;
  /** Called with the new value whenever leadership changes; returns the unsubscribe function. */
  onChange(cb: (leader: boolean) => void): () => void;
  /** Resigns (if leading) and stops taking part. */
  close(): Promise<void>;
}

/** The election of a store with a single writer process (file:): always the leader. */
export const alwaysLeader: LeaderElection = {
  isLeader: () => true,
  onChange: () => () => {},
  close: async () => {},
};

/**
 * A key-encryption key for private keys at rest (`--kek-file`, 32 random bytes, AES-256-GCM).
 * Implemented in kek.ts; stores call seal() before writing a key and open() after reading one.
 */
export interface Kek {
  /** Short id of this key, recorded beside each sealed key so a wrong key is detected, not guessed. */
  readonly keyId: string;
  /** Plain PEM -> sealed text (never a PEM). */
  seal(plainPem: string): string;
  /** Sealed text -> plain PEM; throws a clear error for another key's or a tampered value. */
  open(sealed: string): string;
}

/** True for a value that seal() produced (stores keep plain PEMs when no KEK is set). */
export function isSealed(value: string): boolean {
  return value.startsWith('citadel-kek:');
}

export interface StoreOptions {
  kek?: Kek;
  /**
   * This process writes the store's secrets and CA (`citadel server`, `store rekey`, the target
   * of `store migrate`): a file store then takes its writer lock, so that a second writer refuses
   * to start. ZooKeeper replicas elect a leader instead and ignore it.
   */
  exclusive?: boolean;
}

/** Whether a node certificate issued at `issuedAtMs` (its notBefore plus the CA's clock skew) is refused by `eviction`. */
export function isEvicted(issuedAtMs: number, eviction: NodeEviction | undefined): boolean {
  return eviction !== undefined && issuedAtMs < Date.parse(eviction.evictedAt);
}

/** The latest eviction of each host among `evictions`. */
export function latestEvictions(evictions: Iterable<NodeEviction>): NodeEviction[] {
  const latest = new Map<string, NodeEviction>();
  for (const e of evictions) {
    const seen = latest.get(e.host);
    if (!seen || Date.parse(e.evictedAt) > Date.parse(seen.evictedAt)) latest.set(e.host, e);
  }
  return [...latest.values()].sort((a, b) => a.host.localeCompare(b.host));
}
