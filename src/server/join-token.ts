import { createHash, randomBytes } from 'node:crypto';
import type { JoinTokenRecord } from '../store/store';

/** A one-time node join token: `citadel token create --host H` prints it; the store keeps only its hash. */
export interface JoinToken {
  /** The secret the operator hands to the agent. */
  token: string;
  record: JoinTokenRecord;
}

const PREFIX = 'cjt1.';

export function newJoinToken(host: string, ttlMs: number, now = new Date()): JoinToken {
  const token = PREFIX + randomBytes(32).toString('base64url');
  return {
    token,
    record: { hash: hashJoinToken(token), host, createdAt: now.toISOString(), expiresAt: new Date(now.getTime() + ttlMs).toISOString() },
  };
}

/** hex SHA-256: tokens carry 256 random bits, so a plain hash is enough (no salt or KDF needed). */
export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token.trim(), 'utf8').digest('hex');
}

/** "cjt1." and the base64url of 32 bytes: the 43rd character carries 4 bits, so only 16 letters can end a token. */
export function looksLikeJoinToken(token: string): boolean {
  return /^cjt1\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(token.trim());
}
