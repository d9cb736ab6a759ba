import { KeyObject } from 'node:crypto';
import { children, contextTag, DerError, expectTag, Node, readWhole, seq, smallInteger, TAG, time, unsignedInteger } from './der';
import { hashForSignatureOid, signatureAlgorithmOid } from './keys';
import { fromPem, toPem } from './pem';
import {
  decodeExtensions, decodeExtKeyUsage, decodeKeyUsage, decodeName, decodeSubjectAltNames, encodeExtension,
  encodeExtKeyUsage, encodeKeyUsage, encodeName, encodeSubjectAltNames, Extension, KeyUsageName, keyIdentifier,
  makeSigner, OID, randomSerial, signatureAlgorithm, Signer, signStructure, SubjectAltNames,
} from './x509';

/**
 * A CA certificate and its key, with everything issuance needs precomputed once: the issuer
 * Name bytes, the AuthorityKeyIdentifier extension and the signature algorithm.
 */
export interface Issuer {
  key: KeyObject;
  /** Signs with `key`: natively for P-256 when the addon is built. */
  signer: Signer;
  certDer: Buffer;
  certPem: string;
  subjectDer: Buffer;
  notAfter: Date;
  /** Pre-encoded AuthorityKeyIdentifier extension for certificates this issuer signs. */
  akiExtension: Buffer;
  sigAlgDer: Buffer;
  hash: string;
}

export function makeIssuer(certPem: string, key: KeyObject): Issuer {
  const certDer = fromPem(certPem, 'CERTIFICATE', 'CA certificate');
  const parsed = parseCertificateDer(certDer);
  const ski = parsed.extensions.find((e) => e.oid === OID.subjectKeyIdentifier);
  const keyId = ski ? expectTag(readWhole(ski.value, 'SubjectKeyIdentifier'), TAG.OCTET_STRING, 'SubjectKeyIdentifier').content : keyIdentifier(parsed.spkiDer);
  const sigOid = signatureAlgorithmOid(key);
  return {
    key,
    signer: makeSigner(key, hashForSignatureOid(sigOid)),
    certDer,
    certPem: toPem('CERTIFICATE', certDer),
    subjectDer: parsed.subjectDer,
    notAfter: parsed.notAfter,
    akiExtension: encodeExtension(OID.authorityKeyIdentifier, false, seq(contextTag(0, false, keyId))),
    sigAlgDer: signatureAlgorithm(sigOid),
    hash: hashForSignatureOid(sigOid),
  };
}

export interface LeafOptions {
  /** DER SubjectPublicKeyInfo of the subject's key (from its CSR, or a key we generated). */
  spki: Buffer;
  /** The one SPIFFE ID (URI SAN). */
  spiffeId?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  notBefore: Date;
  notAfter: Date;
  serial?: Buffer;
}

const LEAF_KEY_USAGE = encodeExtension(OID.keyUsage, true, encodeKeyUsage(['digitalSignature', 'keyEncipherment']));
const LEAF_EXT_KEY_USAGE = encodeExtension(OID.extKeyUsage, false, encodeExtKeyUsage([OID.serverAuth, OID.clientAuth]));
const LEAF_BASIC_CONSTRAINTS = encodeExtension(OID.basicConstraints, true, seq());
const EMPTY_NAME = seq();
const VERSION_3 = contextTag(0, true, smallInteger(2));

/**
 * Issues an X.509-SVID leaf: empty subject, one critical URI SAN, KeyUsage digitalSignature|
 * keyEncipherment (critical), ExtKeyUsage serverAuth+clientAuth, CA false, SKI and AKI.
 */
export function issueLeafDer(issuer: Issuer, opts: LeafOptions): Buffer {
  const san = encodeSubjectAltNames({ uris: opts.spiffeId ? [opts.spiffeId] : [], dnsNames: opts.dnsNames, ipAddresses: opts.ipAddresses });
  const notAfter = opts.notAfter > issuer.notAfter ? issuer.notAfter : opts.notAfter;
  const extensions = seq(
    LEAF_KEY_USAGE,
    LEAF_EXT_KEY_USAGE,
    LEAF_BASIC_CONSTRAINTS,
    encodeExtension(OID.subjectKeyIdentifier, false, tlvOctets(keyIdentifier(opts.spki))),
    issuer.akiExtension,
    encodeExtension(OID.subjectAltName, true, san),
  );
  const tbs = seq(
    VERSION_3,
    unsignedInteger(opts.serial ?? randomSerial()),
    issuer.sigAlgDer,
    issuer.subjectDer,
    seq(time(opts.notBefore), time(notAfter)),
    EMPTY_NAME,
    opts.spki,
    contextTag(3, true, extensions),
  );
  return signStructure(tbs, issuer.sigAlgDer, issuer.signer, issuer.hash);
}

function tlvOctets(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from([TAG.OCTET_STRING, b.length]), b]);
}

export interface CaOptions {
  /** The trust domain goes in Subject O, as Istio 1.1+ does. */
  organization: string;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** Limits intermediates below this CA; omitted = no limit. */
  pathLen?: number;
  serial?: Buffer;
}

/** Issues a CA certificate (CA true, KeyUsage keyCertSign|cRLSign critical). Self-signed when `issuer` is the subject's own key. */
export function issueCaDer(signer: Issuer | { selfSignKey: KeyObject }, opts: CaOptions): Buffer {
  const subject = encodeName([[OID.organization, opts.organization]]);
  const skid = keyIdentifier(opts.spki);
  const selfSigned = 'selfSignKey' in signer;
  const key = selfSigned ? signer.selfSignKey : signer.key;
  const sigOid = signatureAlgorithmOid(key);
  const sigAlg = signatureAlgorithm(sigOid);
  const bc = opts.pathLen === undefined ? seq(tlvBool()) : seq(tlvBool(), smallInteger(opts.pathLen));
  const exts = [
    encodeExtension(OID.basicConstraints, true, bc),
    encodeExtension(OID.keyUsage, true, encodeKeyUsage(['keyCertSign', 'cRLSign'])),
    encodeExtension(OID.subjectKeyIdentifier, false, tlvOctets(skid)),
    selfSigned ? encodeExtension(OID.authorityKeyIdentifier, false, seq(contextTag(0, false, skid))) : signer.akiExtension,
  ];
  const tbs = seq(
    VERSION_3,
    unsignedInteger(opts.serial ?? randomSerial()),
    sigAlg,
    selfSigned ? subject : signer.subjectDer,
    seq(time(opts.notBefore), time(opts.notAfter)),
    subject,
    opts.spki,
    contextTag(3, true, seq(...exts)),
  );
  return signStructure(tbs, sigAlg, key, hashForSignatureOid(sigOid));
}

function tlvBool(): Buffer {
  return Buffer.from([TAG.BOOLEAN, 1, 0xff]);
}

/** What we read out of a certificate, from its DER. */
export interface ParsedCertificate {
  der: Buffer;
  serialHex: string;
  issuerDer: Buffer;
  subjectDer: Buffer;
  subject: Array<[string, string]>;
  issuer: Array<[string, string]>;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  extensions: Extension[];
  isCa: boolean;
  keyUsage?: Set<KeyUsageName>;
  extKeyUsage?: string[];
  san?: SubjectAltNames;
}

export function parseCertificateDer(der: Buffer): ParsedCertificate {
  const [tbs] = children(expectTag(readWhole(der, 'certificate'), TAG.SEQUENCE, 'certificate'));
  const f = children(expectTag(tbs, TAG.SEQUENCE, 'TBSCertificate'));
  let i = f[0]?.tag === 0xa0 ? 1 : 0;
  const serial = expectTag(f[i++], TAG.INTEGER, 'serialNumber');
  i++; // signature algorithm
  const issuer = expectTag(f[i++], TAG.SEQUENCE, 'issuer');
  const validity = children(expectTag(f[i++], TAG.SEQUENCE, 'validity'));
  const subject = expectTag(f[i++], TAG.SEQUENCE, 'subject');
  const spki = expectTag(f[i++], TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const extNode = f.slice(i).find((n) => n.tag === 0xa3);
  const extensions = extNode ? decodeExtensions(expectTag(children(extNode)[0], TAG.SEQUENCE, 'extensions').raw) : [];
  const get = (o: string) => extensions.find((e) => e.oid === o);
  const bc = get(OID.basicConstraints);
  const bcFields = bc ? children(readWhole(bc.value, 'BasicConstraints')) : [];
  const ku = get(OID.keyUsage);
  const eku = get(OID.extKeyUsage);
  const san = get(OID.subjectAltName);
  return {
    der,
    serialHex: serial.content.toString('hex'),
    issuerDer: issuer.raw,
    subjectDer: subject.raw,
    subject: decodeName(subject.raw),
    issuer: decodeName(issuer.raw),
    notBefore: decodeTime(validity[0], 'notBefore'),
    notAfter: decodeTime(validity[1], 'notAfter'),
    spkiDer: spki.raw,
    extensions,
    isCa: bcFields[0]?.tag === TAG.BOOLEAN && bcFields[0].content[0] !== 0,
    keyUsage: ku ? decodeKeyUsage(ku.value) : undefined,
    extKeyUsage: eku ? decodeExtKeyUsage(eku.value) : undefined,
    san: san ? decodeSubjectAltNames(san.value) : undefined,
  };
}

export function parseCertificatePem(pem: string, what = 'certificate'): ParsedCertificate {
  return parseCertificateDer(fromPem(pem, 'CERTIFICATE', what));
}

function decodeTime(node: Node | undefined, what: string): Date {
  if (!node) throw new DerError(`${what}: missing`);
  const s = node.content.toString('latin1');
  const m =
    node.tag === TAG.UTC_TIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
    : node.tag === TAG.GENERALIZED_TIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
    : null;
  if (!m) throw new DerError(`bad certificate time "${s}"`);
  let year = Number(m[1]);
  if (node.tag === TAG.UTC_TIME) year += year < 50 ? 2000 : 1900;
  const [month, day, hour, minute, second] = m.slice(2).map(Number);
  const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  d.setUTCFullYear(year, month - 1, day); // Date.UTC reads years 0-99 as 1900-1999
  // Date.UTC rolls fields over (month 13, February 30, hour 24): refuse rather than read another time
  if (d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || d.getUTCSeconds() !== second) {
    throw new DerError(`bad certificate time "${s}"`);
  }
  return d;
}

export function certificatePem(der: Buffer): string {
  return toPem('CERTIFICATE', der);
}

