import { KeyObject } from 'node:crypto';
import { children, contextTag, decodeOid, DerError, expectTag, oid, readWhole, seq, set, smallInteger, TAG } from './der';
import { hashForSignatureOid, isP256Spki, publicKeyFromSpki, publicKeyOf, signatureAlgorithmOid, SigningKeyPair, spkiDer, verifyWithSpki } from './keys';
import { parsePemBlocks, toPem } from './pem';
import {
  decodeExtensions, decodeExtKeyUsage, decodeKeyUsage, decodeName, decodeSubjectAltNames, encodeExtension,
  encodeExtKeyUsage, encodeKeyUsage, encodeName, encodeSubjectAltNames, KeyUsageName, OID, signatureAlgorithm,
  signStructure,
} from './x509';

/** Why a CSR was refused; `rule` names the strict-validation rule, for logs and metrics. */
export class CsrError extends Error {
  constructor(readonly rule: CsrRule, message: string) {
    super(message);
    this.name = 'CsrError';
  }
}

export type CsrRule =
  | 'malformed'
  | 'signature'
  | 'key-type'
  | 'common-name'
  | 'dns-ip-email-san'
  | 'extension'
  | 'key-usage'
  | 'ext-key-usage'
  | 'identity';

export interface CreateCsrOptions {
  /** A key object, or a key made with its signer (generateSigningKeyPair: no export or parse on the way). */
  key: KeyObject | SigningKeyPair;
  /** URI SANs, normally the one SPIFFE ID of the workload. */
  uris: string[];
  /** Only for tests of refusal: things a strict CA must refuse. */
  commonName?: string;
  dnsNames?: string[];
  keyUsage?: KeyUsageName[];
  extKeyUsage?: string[];
  extraExtensions?: Array<{ oid: string; critical: boolean; value: Buffer }>;
}

/** Creates a PEM CSR as Istio's node agent does: empty subject, URI SAN, no CN. */
export function createCsr(opts: CreateCsrOptions): string {
  const exts: Buffer[] = [];
  if (opts.uris.length || opts.dnsNames?.length) {
    exts.push(encodeExtension(OID.subjectAltName, false, encodeSubjectAltNames({ uris: opts.uris, dnsNames: opts.dnsNames })));
  }
  if (opts.keyUsage) exts.push(encodeExtension(OID.keyUsage, true, encodeKeyUsage(opts.keyUsage)));
  if (opts.extKeyUsage) exts.push(encodeExtension(OID.extKeyUsage, false, encodeExtKeyUsage(opts.extKeyUsage)));
  for (const e of opts.extraExtensions ?? []) exts.push(encodeExtension(e.oid, e.critical, e.value));
  const attributes = exts.length ? contextTag(0, true, seq(oid(OID.extensionRequest), set(seq(...exts)))) : contextTag(0, true);
  const subject = encodeName(opts.commonName ? [[OID.commonName, opts.commonName]] : []);
  const key = opts.key;
  const made = !(key instanceof KeyObject);
  const info = seq(smallInteger(0), subject, made ? key.spki : spkiDer(publicKeyOf(key)), attributes);
  const sigOid = made ? key.signatureOid : signatureAlgorithmOid(key);
  return toPem('CERTIFICATE REQUEST', signStructure(info, signatureAlgorithm(sigOid), key, hashForSignatureOid(sigOid)));
}

export interface ParsedCsr {
  /** The subject's SubjectPublicKeyInfo, DER, copied into the certificate as-is. */
  spki: Buffer;
  uris: string[];
}

const ALLOWED_EXTENSIONS = new Set<string>([OID.subjectAltName, OID.keyUsage, OID.extKeyUsage]);
const ALLOWED_KEY_USAGE = new Set<KeyUsageName>(['digitalSignature', 'keyEncipherment']);
const ALLOWED_EKU = new Set<string>([OID.serverAuth, OID.clientAuth]);

/** Accepts a PEM string or PEM/DER bytes; returns the DER of the one CSR in it. */
export function csrDer(input: string | Buffer): Buffer {
  try {
    if (Buffer.isBuffer(input) && input[0] === TAG.SEQUENCE) return input;
    const text = Buffer.isBuffer(input) ? input.toString('latin1') : input;
    const blocks = parsePemBlocks(text).filter((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
    if (blocks.length !== 1) throw new Error(blocks.length ? `expected one CSR PEM block, found ${blocks.length}` : 'no "CERTIFICATE REQUEST" PEM block found');
    return blocks[0].der;
  } catch (err) {
    throw new CsrError('malformed', (err as Error).message);
  }
}

/**
 * Parses a CSR and applies strict validation (as cert-manager istio-csr does): the signature
 * verifies; no CommonName; no DNS, IP or email SANs; only SAN, KeyUsage and ExtKeyUsage
 * extensions; KeyUsage within digitalSignature|keyEncipherment; ExtKeyUsage within
 * serverAuth|clientAuth; EC P-256/P-384 or RSA >= 2048 keys; and, when `expectedUris` is
 * given, the CSR's URI SANs equal exactly those (the caller's authenticated identities).
 */
export function parseAndValidateCsr(input: string | Buffer, expectedUris?: string[]): ParsedCsr {
  const der = csrDer(input);
  let info, sigAlg, sig, version, subject, spki, attrs;
  try {
    [info, sigAlg, sig] = children(expectTag(readWhole(der, 'CSR'), TAG.SEQUENCE, 'CSR'));
    [version, subject, spki, attrs] = children(expectTag(info, TAG.SEQUENCE, 'CertificationRequestInfo'));
    expectTag(version, TAG.INTEGER, 'CSR version');
    expectTag(subject, TAG.SEQUENCE, 'CSR subject');
    expectTag(spki, TAG.SEQUENCE, 'CSR public key');
    expectTag(sig, TAG.BIT_STRING, 'CSR signature');
    if (attrs && attrs.tag !== 0xa0) throw new DerError('CSR attributes: expected [0]');
  } catch (err) {
    throw new CsrError('malformed', `CSR is not valid DER: ${(err as Error).message}`);
  }

  const keyProblem = spkiKeyProblem(spki.raw);
  if (keyProblem) throw new CsrError(keyProblem.rule, keyProblem.message);

  let hash: string;
  try {
    const algOid = decodeOid(expectTag(children(sigAlg)[0], TAG.OID, 'CSR signature algorithm').content);
    hash = hashForSignatureOid(algOid);
  } catch (err) {
    throw new CsrError('signature', `CSR signature algorithm: ${(err as Error).message}`);
  }
  if (!verifyWithSpki(spki.raw, hash, info.raw, sig.content.subarray(1))) {
    throw new CsrError('signature', 'CSR signature does not verify against its own public key');
  }

  let extensions: ReturnType<typeof decodeExtensions> = [];
  try {
    if (decodeName(subject.raw).some(([type]) => type === OID.commonName)) {
      throw new CsrError('common-name', 'CSR must not carry a CommonName; the identity goes in the URI SAN only');
    }
    for (const attr of attrs ? children(attrs) : []) {
      const [attrType, values] = children(attr);
      const attrOid = decodeOid(expectTag(attrType, TAG.OID, 'CSR attribute type').content);
      if (attrOid !== OID.extensionRequest) continue;
      for (const v of children(expectTag(values, TAG.SET, 'CSR attribute values'))) extensions.push(...decodeExtensions(v.raw));
    }
  } catch (err) {
    if (err instanceof CsrError) throw err;
    throw new CsrError('malformed', `CSR contents cannot be read: ${(err as Error).message}`);
  }

  let uris: string[] = [];
  for (const ext of extensions) {
    if (!ALLOWED_EXTENSIONS.has(ext.oid)) {
      throw new CsrError('extension', `CSR extension ${ext.oid} is not allowed; only SubjectAltName, KeyUsage and ExtKeyUsage`);
    }
    try {
      if (ext.oid === OID.subjectAltName) {
        const san = decodeSubjectAltNames(ext.value);
        if (san.dnsNames.length || san.ipAddresses.length || san.emails.length || san.others.length) {
          throw new CsrError('dns-ip-email-san', 'CSR must not request DNS, IP, email or other SANs; only the URI SAN of its identity');
        }
        uris = san.uris;
      } else if (ext.oid === OID.keyUsage) {
        const bad = [...decodeKeyUsage(ext.value)].filter((u) => !ALLOWED_KEY_USAGE.has(u));
        if (bad.length) throw new CsrError('key-usage', `CSR KeyUsage ${bad.join(', ')} is not allowed; only digitalSignature and keyEncipherment`);
      } else {
        const bad = decodeExtKeyUsage(ext.value).filter((u) => !ALLOWED_EKU.has(u));
        if (bad.length) throw new CsrError('ext-key-usage', `CSR ExtKeyUsage ${bad.join(', ')} is not allowed; only serverAuth and clientAuth`);
      }
    } catch (err) {
      if (err instanceof CsrError) throw err;
      throw new CsrError('malformed', `CSR extension ${ext.oid} cannot be read: ${(err as Error).message}`);
    }
  }

  if (expectedUris) {
    const want = [...new Set(expectedUris)].sort();
    const got = [...new Set(uris)].sort();
    if (got.length !== uris.length || want.length !== got.length || want.some((u, i) => u !== got[i])) {
      throw new CsrError(
        'identity',
        `CSR asks for ${uris.length ? uris.join(', ') : 'no URI SAN'} but the caller is ${want.join(', ')}; a CSR may only name the caller's own identity`,
      );
    }
  }
  return { spki: spki.raw, uris };
}

/** EC P-256/P-384 or RSA 2048..8192; anything else is refused. P-256 is decided from the bytes alone. */
function spkiKeyProblem(spki: Buffer): { rule: CsrRule; message: string } | undefined {
  if (isP256Spki(spki)) return undefined;
  let key: KeyObject;
  try {
    key = publicKeyFromSpki(spki);
  } catch (err) {
    return { rule: 'malformed', message: `CSR public key cannot be read: ${(err as Error).message}` };
  }
  const d = key.asymmetricKeyDetails ?? {};
  const ok =
    (key.asymmetricKeyType === 'ec' && (d.namedCurve === 'prime256v1' || d.namedCurve === 'secp384r1')) ||
    (key.asymmetricKeyType === 'rsa' && (d.modulusLength ?? 0) >= 2048 && (d.modulusLength ?? 0) <= 8192);
  return ok ? undefined : { rule: 'key-type', message: `CSR key ${key.asymmetricKeyType} ${d.namedCurve ?? d.modulusLength ?? ''} is not allowed; use EC P-256 (or P-384) or RSA 2048+` };
}
