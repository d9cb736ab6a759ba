import * as path from 'node:path';

/**
 * The optional native addon (build/Release/citadel_native.node, compiled by `npm run build` from
 * src/pki/native/p256.c and src/common/native/syncfs.c). Everything it does has a slower
 * fallback, so citadel works without it.
 */
export interface NativeAddon {
  /** syncfs(2) of the filesystem holding `fd`, on the thread pool. */
  syncfs(fd: number): Promise<void>;
  /** `chattr +T`: "" when set, else why not (ENOTTY etc. on filesystems without the flag). */
  markTopDir(dir: string): string;
  /** flock(fd, LOCK_EX | LOCK_NB): "" when held now, "busy" when another descriptor holds it, else why not. */
  tryLock(fd: number): string;
  verifyP256Sha256(point: Buffer, message: Buffer, signature: Buffer): boolean;
  /** Loads a P-256 private key (SEC1 DER) once; the handle signs many times. */
  p256Signer(sec1Der: Buffer): object;
  signP256Sha256(signer: object, message: Buffer): Buffer;
  /** A new P-256 key: the private scalar (32 bytes) then the uncompressed public point (65). */
  generateP256(): Buffer;
}

function load(): NativeAddon | undefined {
  if (process.env.CITADEL_NO_NATIVE) return undefined;
  try {
    // From dist/src/common (compiled) or src/common up to the repository root.
    for (const up of ['../../..', '../..']) {
      try {
        return require(path.resolve(__dirname, up, 'build', 'Release', 'citadel_native.node')) as NativeAddon;
      } catch {
        /* try the next location */
      }
    }
  } catch {
    /* fall through */
  }
  return undefined;
}

/** Undefined when the addon was not built; callers then use node:crypto and `sync -f`. */
export const nativeAddon: NativeAddon | undefined = load();

/** The P-256 functions, when the addon is built and OpenSSL has the curve. */
export const nativeP256: Pick<NativeAddon, 'verifyP256Sha256' | 'p256Signer' | 'signP256Sha256' | 'generateP256'> | undefined =
  nativeAddon && typeof nativeAddon.verifyP256Sha256 === 'function' && typeof nativeAddon.generateP256 === 'function' ? nativeAddon : undefined;
