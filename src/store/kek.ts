/**
 * The key-encryption key (`--kek-file`): AES-256-GCM over private key PEMs at rest.
 * Sealed form: `citadel-kek:v1:<keyId>:<base64 iv>:<base64 ciphertext+tag>`, where keyId is the
 * first 8 hex digits of SHA-256 of the key, so a value opened with the wrong key is named, not guessed.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { UserError, errorMessage } from '../common/errors';
import type { Kek } from './store';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const PREFIX = 'citadel-kek';
const VERSION = 'v1';

/** First 8 hex digits of SHA-256 of the key. */
export function kekKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

/** The parts of a sealed value, or undefined for anything that is not `citadel-kek:v1:...`. */
function parseSealed(sealed: string): { version: string; keyId: string; iv: Buffer; body: Buffer } | undefined {
  const parts = sealed.trim().split(':');
  if (parts.length !== 5 || parts[0] !== PREFIX) return undefined;
  const [, version, keyId, iv, body] = parts;
  return { version, keyId, iv: Buffer.from(iv, 'base64'), body: Buffer.from(body, 'base64') };
}

/** The key id recorded in a sealed value (undefined when the value is not sealed). */
export function sealedKeyId(sealed: string): string | undefined {
  return parseSealed(sealed)?.keyId;
}

class AesGcmKek implements Kek {
  readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`a KEK is ${KEY_BYTES} bytes, not ${key.length}`);
    this.keyId = kekKeyId(key);
  }

  seal(plainPem: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    // The header is authenticated too, so a value cannot be relabelled with another key id or version.
    cipher.setAAD(Buffer.from(this.header()));
    const body = Buffer.concat([cipher.update(plainPem, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${this.header()}:${iv.toString('base64')}:${body.toString('base64')}`;
  }

  open(sealed: string): string {
    const parsed = parseSealed(sealed);
    if (!parsed) throw new UserError('private key is not a citadel-kek sealed value; the stored data is corrupt');
    if (parsed.version !== VERSION) {
      throw new UserError(`private key is sealed in format ${parsed.version}; this citadel reads ${VERSION} only: upgrade citadel`);
    }
    if (parsed.keyId !== this.keyId) {
      throw new UserError(
        `private key was sealed with KEK ${parsed.keyId} but the given KEK is ${this.keyId}: pass the --kek-file whose key id is ${parsed.keyId}`,
      );
    }
    if (parsed.iv.length !== IV_BYTES || parsed.body.length < TAG_BYTES) {
      throw new UserError(`private key sealed with KEK ${this.keyId} is truncated; the stored data is corrupt`);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, parsed.iv);
      decipher.setAAD(Buffer.from(this.header()));
      decipher.setAuthTag(parsed.body.subarray(parsed.body.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(parsed.body.subarray(0, parsed.body.length - TAG_BYTES)), decipher.final()]);
      return plain.toString('utf8');
    } catch {
      throw new UserError(`private key sealed with KEK ${this.keyId} failed authentication: it was altered or is corrupt`);
    }
  }

  private header(): string {
    return `${PREFIX}:${VERSION}:${this.keyId}`;
  }
}

/** A KEK from 32 raw bytes. */
export function kekFromBytes(key: Buffer): Kek {
  return new AesGcmKek(Buffer.from(key));
}

/**
 * Reads `--kek-file`: exactly 32 raw bytes, or the same as 64 hex digits or base64 (surrounding
 * whitespace ignored). Anything else is refused with a one-line error saying how to make one.
 */
export function loadKek(file: string): Kek {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new UserError(`--kek-file ${file}: cannot read it (${errorMessage(err)})`);
  }
  if (raw.length === KEY_BYTES) return new AesGcmKek(raw);
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return new AesGcmKek(Buffer.from(text, 'hex'));
  if (/^[A-Za-z0-9+/]{43}=$/.test(text) || /^[A-Za-z0-9_-]{43}$/.test(text)) {
    const key = Buffer.from(text, text.endsWith('=') ? 'base64' : 'base64url');
    if (key.length === KEY_BYTES) return new AesGcmKek(key);
  }
  throw new UserError(
    `--kek-file ${file}: expected exactly 32 random bytes (or 64 hex digits, or base64 of 32 bytes), found ${raw.length} bytes; ` +
      `create one with: citadel store kek-generate ${file}`,
  );
}

/** Writes a new random 32-byte KEK to `file` (mode 0600, never overwriting); returns it. */
export function generateKekFile(file: string): Kek {
  const key = randomBytes(KEY_BYTES);
  try {
    writeFileSync(file, key, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(
      code === 'EEXIST' ? `${file} already exists; a KEK is never overwritten, choose another path` : `cannot write ${file}: ${errorMessage(err)}`,
    );
  }
  return new AesGcmKek(key);
}

/**
 * Several KEKs as one: seals with the first, opens a value with whichever key sealed it. Lets a
 * rekey that stopped half way be run again, and readers span a key change.
 */
export function kekRing(primary: Kek, ...others: Kek[]): Kek {
  const all = [primary, ...others];
  return {
    keyId: primary.keyId,
    seal: (plainPem) => primary.seal(plainPem),
    open(sealed) {
      const id = sealedKeyId(sealed);
      const kek = all.find((k) => k.keyId === id);
      if (!kek) {
        if (id === undefined) return primary.open(sealed); // primary's error says what is wrong with it
        throw new UserError(
          `private key was sealed with KEK ${id} but the given KEKs are ${all.map((k) => k.keyId).join(', ')}: pass the --kek-file whose key id is ${id}`,
        );
      }
      return kek.open(sealed);
    },
  };
}
