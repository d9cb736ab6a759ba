import * as path from 'node:path';

/** The optional native P-256 addon (src/pki/native/p256.c, built by `npm run build`). */
export interface NativeP256 {
  verifyP256Sha256(point: Buffer, message: Buffer, signature: Buffer): boolean;
  /** Loads a P-256 private key (SEC1 DER) once; the handle signs many times. */
  p256Signer(sec1Der: Buffer): object;
  signP256Sha256(signer: object, message: Buffer): Buffer;
}

function load(): NativeP256 | undefined {
  if (process.env.CITADEL_NO_NATIVE) return undefined;
  try {
    // From dist/src/pki (compiled) or src/pki (ts-node style) up to the repository root.
    for (const up of ['../../..', '../..']) {
      try {
        return require(path.resolve(__dirname, up, 'build', 'Release', 'citadel_native.node')) as NativeP256;
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
export const nativeP256: NativeP256 | undefined = load();
