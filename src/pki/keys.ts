import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, sign, verify } from 'node:crypto';
import { bitString, children, contextTag, decodeOid, DerError, Node, octets, oid, readWhole, seq, smallInteger, TAG } from './der';
import { toPem } from './pem';
import { nativeP256 } from '../common/native';
import { parsePemBlocks } from './pem';

/** EC P-256 is the default; RSA 2048 is for Istio 1.0 parity (Citadel wrote PKCS#1 RSA keys). */
export type KeyAlgorithm = 'ec-p256' | 'rsa-2048';
export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['ec-p256', 'rsa-2048'];

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function generateKeyPair(algorithm: KeyAlgorithm = 'ec-p256'): KeyPair {
  return algorithm === 'ec-p256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
}

export type PrivateKeyPemFormat = 'pkcs8' | 'pkcs1';

/** PKCS#8 by default; `pkcs1` writes RSA keys as `RSA PRIVATE KEY`, as Citadel 1.0 did. */
export function privateKeyToPem(key: KeyObject, format: PrivateKeyPemFormat = 'pkcs8'): string {
  if (format === 'pkcs1') {
    if (key.asymmetricKeyType !== 'rsa') throw new Error('PKCS#1 PEM is only for RSA keys');
    return key.export({ format: 'pem', type: 'pkcs1' }) as string;
  }
  return key.export({ format: 'pem', type: 'pkcs8' }) as string;
}

/** Reads a private key PEM: PKCS#8, PKCS#1 RSA or SEC1 EC. Throws a clear error for anything else. */
export function privateKeyFromPem(pem: string, what = 'private key'): KeyObject {
  const labels = parsePemBlocks(pem).map((b) => b.label);
  const keyLabels = labels.filter((l) => l.endsWith('PRIVATE KEY'));
  if (keyLabels.length !== 1) {
    throw new Error(`${what}: expected one PRIVATE KEY PEM block, found ${keyLabels.length}`);
  }
  if (keyLabels[0] === 'ENCRYPTED PRIVATE KEY') throw new Error(`${what}: encrypted private keys are not supported; decrypt it first`);
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new Error(`${what}: cannot read the key (${(err as Error).message})`);
  }
}

export function publicKeyOf(key: KeyObject): KeyObject {
  return key.type === 'public' ? key : createPublicKey(key);
}

/** The DER SubjectPublicKeyInfo of a key. */
export function spkiDer(key: KeyObject): Buffer {
  return publicKeyOf(key).export({ format: 'der', type: 'spki' });
}

/** "EC P-256", "RSA 2048", ... for people. */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') return `EC ${d.namedCurve === 'prime256v1' ? 'P-256' : d.namedCurve === 'secp384r1' ? 'P-384' : d.namedCurve}`;
  if (key.asymmetricKeyType === 'rsa') return `RSA ${d.modulusLength}`;
  return String(key.asymmetricKeyType).toUpperCase();
}

/** The signature algorithm we sign with for a key: ECDSA or RSA PKCS#1 v1.5, with SHA-256. */
export function signatureAlgorithmOid(key: KeyObject): string {
  if (key.asymmetricKeyType === 'ec') return key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? OID_ECDSA_SHA384 : OID_ECDSA_SHA256;
  if (key.asymmetricKeyType === 'rsa') return OID_RSA_SHA256;
  throw new Error(`unsupported key type ${key.asymmetricKeyType}; use EC P-256 or RSA`);
}

export function hashForSignatureOid(sigOid: string): string {
  switch (sigOid) {
    case OID_ECDSA_SHA256:
    case OID_RSA_SHA256:
      return 'sha256';
    case OID_ECDSA_SHA384:
    case OID_RSA_SHA384:
      return 'sha384';
    case OID_RSA_SHA512:
    case OID_ECDSA_SHA512:
      return 'sha512';
    default:
      throw new Error(`unsupported signature algorithm ${sigOid}`);
  }
}

export const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
export const OID_ECDSA_SHA384 = '1.2.840.10045.4.3.3';
export const OID_ECDSA_SHA512 = '1.2.840.10045.4.3.4';
export const OID_RSA_SHA256 = '1.2.840.113549.1.1.11';
export const OID_RSA_SHA384 = '1.2.840.113549.1.1.12';
export const OID_RSA_SHA512 = '1.2.840.113549.1.1.13';
export const RSA_SIGNATURE_OIDS = new Set([OID_RSA_SHA256, OID_RSA_SHA384, OID_RSA_SHA512]);

// DER SPKI of an uncompressed P-256 point: a fixed 26-byte header, then 0x04 || X || Y.
const P256_SPKI_HEADER = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/**
 * A public KeyObject from DER SubjectPublicKeyInfo. P-256 keys go through JWK, which OpenSSL 3
 * imports about 2.5x faster than DER: this sits on the signing hot path.
 */
export function publicKeyFromSpki(spki: Buffer): KeyObject {
  if (isP256Spki(spki)) {
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: spki.subarray(27, 59).toString('base64url'), y: spki.subarray(59, 91).toString('base64url') },
      format: 'jwk',
    });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** True for the DER SPKI of an uncompressed P-256 point (the common case, with a fast path). */
export function isP256Spki(spki: Buffer): boolean {
  return spki.length === 91 && spki[26] === 0x04 && spki.subarray(0, 26).equals(P256_SPKI_HEADER);
}

/**
 * Verifies `signature` over `data` with the public key in `spki`. P-256 with SHA-256 goes to the
 * native verifier when it is built (no per-call key object); everything else to node:crypto.
 */
export function verifyWithSpki(spki: Buffer, hash: string, data: Buffer, signature: Buffer): boolean {
  try {
    if (nativeP256 && hash === 'sha256' && isP256Spki(spki)) return nativeP256.verifyP256Sha256(spki.subarray(26), data, signature);
    return verify(hash, data, publicKeyFromSpki(spki), signature);
  } catch {
    return false;
  }
}

/** A private key as PEM and its public key as DER SPKI: what a Citadel secret needs. */
export interface EncodedKeyPair {
  privateKeyPem: string;
  spki: Buffer;
}

/**
 * Generates a key pair already encoded. For P-256 the key comes from the native addon (56 µs a
 * key here, with encoding) or from ECDH without it (106 µs), and is encoded by our DER encoder:
 * OpenSSL 3.0's encoders cost about 0.5 ms per key (PKCS#8 plus SPKI), and a reconcile makes
 * thousands.
 */
export function generateEncodedKeyPair(algorithm: KeyAlgorithm = 'ec-p256'): EncodedKeyPair {
  if (algorithm === 'ec-p256') {
    let scalar: Buffer;
    let point: Buffer;
    if (nativeP256) {
      const k = nativeP256.generateP256();
      scalar = k.subarray(0, 32);
      point = k.subarray(32);
    } else {
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      point = ecdh.getPublicKey();
      const d = ecdh.getPrivateKey();
      scalar = d.length === 32 ? d : Buffer.concat([Buffer.alloc(32 - d.length), d]);
    }
    const ecPrivateKey = seq(smallInteger(1), octets(scalar), contextTag(1, true, bitString(point)));
    const pkcs8 = seq(smallInteger(0), seq(oid(OID_EC_PUBLIC_KEY), oid(OID_P256)), octets(ecPrivateKey));
    return { privateKeyPem: toPem('PRIVATE KEY', pkcs8), spki: Buffer.concat([P256_SPKI_HEADER, point]) };
  }
  const pair = generateKeyPair(algorithm);
  return { privateKeyPem: privateKeyToPem(pair.privateKey, 'pkcs1'), spki: spkiDer(pair.publicKey) };
}

/**
 * A key made to be used at once, as the node agent makes one per workload in SDS mode: its PEM
 * (for the workload), its SPKI (for the CSR and for matching the certificate) and a signer (for
 * the CSR), with no PEM parsing and no OpenSSL encoders on the way (about 0.5 ms a key otherwise).
 */
export interface SigningKeyPair extends EncodedKeyPair {
  signatureOid: string;
  sign(data: Buffer): Buffer;
}

export function generateSigningKeyPair(algorithm: KeyAlgorithm = 'ec-p256'): SigningKeyPair {
  if (algorithm === 'ec-p256' && nativeP256) {
    const k = nativeP256.generateP256();
    const ecPrivateKey = seq(smallInteger(1), octets(k.subarray(0, 32)), contextTag(1, true, bitString(k.subarray(32))));
    const pkcs8 = seq(smallInteger(0), seq(oid(OID_EC_PUBLIC_KEY), oid(OID_P256)), octets(ecPrivateKey));
    // The signer's SEC1 names its curve (d2i_ECPrivateKey needs it); inside PKCS#8 the algorithm does.
    const handle = nativeP256.p256Signer(seq(smallInteger(1), octets(k.subarray(0, 32)), contextTag(0, true, oid(OID_P256)), contextTag(1, true, bitString(k.subarray(32)))));
    return { privateKeyPem: toPem('PRIVATE KEY', pkcs8), spki: Buffer.concat([P256_SPKI_HEADER, k.subarray(32)]), signatureOid: OID_ECDSA_SHA256, sign: (data) => nativeP256!.signP256Sha256(handle, data) };
  }
  const { privateKey } = generateKeyPair(algorithm);
  const signatureOid = signatureAlgorithmOid(privateKey);
  const hash = hashForSignatureOid(signatureOid);
  return { privateKeyPem: privateKeyToPem(privateKey), spki: spkiDer(privateKey), signatureOid, sign: (data) => sign(hash, data, privateKey) };
}


/**
 * The DER SPKI of an EC P-256 private key PEM (PKCS#8 or SEC1), from its scalar (d·G), or undefined
 * for any other key (the caller reads those through node:crypto, which also gives the errors).
 * OpenSSL 3.0's PEM and DER decoders cost about 0.5 ms a key, and a node agent checks every key it
 * is sent, 10,000 on a cold start; d·G through ECDH costs about 40 µs.
 */
export function p256SpkiOfPrivateKeyPem(pem: string): Buffer | undefined {
  const key = p256PrivateKeyParts(pem);
  if (!key) return undefined;
  let point: Buffer;
  try {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(key.scalar);
    point = ecdh.getPublicKey();
  } catch {
    return undefined; // a scalar out of range: node:crypto says so
  }
  // A key whose stated public key is not its scalar's is broken whatever it is matched with.
  if (key.statedPoint && !key.statedPoint.equals(point)) throw new Error('its public key is not the one its private scalar makes');
  return Buffer.concat([P256_SPKI_HEADER, point]);
}

/** The scalar (and the public point, when stated) of a P-256 PKCS#8 or SEC1 key; undefined for anything else. */
function p256PrivateKeyParts(pem: string): { scalar: Buffer; statedPoint?: Buffer } | undefined {
  const blocks = parsePemBlocks(pem).filter((b) => b.label.endsWith('PRIVATE KEY'));
  if (blocks.length !== 1 || (blocks[0].label !== 'PRIVATE KEY' && blocks[0].label !== 'EC PRIVATE KEY')) return undefined;
  const isOid = (n: Node | undefined, dotted: string) => n?.tag === TAG.OID && decodeOid(n.content) === dotted;
  try {
    let ecPrivateKey = blocks[0].der;
    if (blocks[0].label === 'PRIVATE KEY') {
      const [version, algorithm, key, ...attributes] = children(readWhole(blocks[0].der, 'PKCS#8'));
      // Anything past the optional [0] attributes (a v2 public key, junk) is for OpenSSL to judge.
      if (attributes.length > 1 || (attributes.length === 1 && attributes[0].tag !== 0xa0)) return undefined;
      const [algOid, curve] = algorithm?.tag === TAG.SEQUENCE ? children(algorithm) : [];
      if (version?.tag !== TAG.INTEGER || version.content.length !== 1 || version.content[0] > 1) return undefined;
      if (!isOid(algOid, OID_EC_PUBLIC_KEY) || !isOid(curve, OID_P256) || key?.tag !== TAG.OCTET_STRING) return undefined;
      ecPrivateKey = key.content;
    }
    const [version, scalar, ...rest] = children(readWhole(ecPrivateKey, 'ECPrivateKey'));
    if (version?.tag !== TAG.INTEGER || version.content.length !== 1 || version.content[0] !== 1) return undefined;
    if (scalar?.tag !== TAG.OCTET_STRING || scalar.content.length !== 32) return undefined;
    // Only [0] parameters then [1] public key, each at most once, in that order.
    if (rest.length > 2 || rest.some((n) => n.tag !== 0xa0 && n.tag !== 0xa1) || (rest.length === 2 && (rest[0].tag !== 0xa0 || rest[1].tag !== 0xa1))) return undefined;
    const params = rest.find((n) => n.tag === 0xa0);
    // SEC1 must name its curve; inside PKCS#8 the algorithm already did.
    if (params ? !isOid(children(params)[0], OID_P256) : blocks[0].label === 'EC PRIVATE KEY') return undefined;
    const stated = rest.find((n) => n.tag === 0xa1);
    const bits = stated && children(stated)[0];
    // An uncompressed point, as the SPKI carries it; a compressed one goes to OpenSSL.
    if (stated && (bits?.tag !== TAG.BIT_STRING || bits.content.length !== 66 || bits.content[0] !== 0 || bits.content[1] !== 0x04)) return undefined;
    return { scalar: scalar.content, statedPoint: bits?.content.subarray(1) };
  } catch (err) {
    if (err instanceof DerError) return undefined;
    throw err;
  }
}

const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const OID_P256 = '1.2.840.10045.3.1.7';
