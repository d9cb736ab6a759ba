import * as path from 'node:path';

/** The optional native P-256 verifier (src/pki/native/p256_verify.c, built by `npm run build`). */
export interface NativeVerifier {
  verifyP256Sha256(point: Buffer, message: Buffer, signature: Buffer): boolean;
}

function load(): NativeVerifier | undefined {
  if (process.env.CITADEL_NO_NATIVE) return undefined;
  try {
    // From dist/src/pki (compiled) or src/pki (ts-node style) up to the repository root.
    for (const up of ['../../..', '../..']) {
      try {
        return require(path.resolve(__dirname, up, 'build', 'Release', 'citadel_native.node')) as NativeVerifier;
      } catch {
        /* try the next location */
      }
    }
  } catch {
    /* fall through */
  }
  return undefined;
}

/** Undefined when the addon was not built; callers then use node:crypto. */
export const nativeVerifier: NativeVerifier | undefined = load();
