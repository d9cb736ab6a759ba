import { hash, randomBytes, sign, KeyObject } from 'node:crypto';
import { bitString, bool, children, contextTag, decodeOid, DerError, expectTag, nullValue, octets, oid, readNode, readWhole, seq, set, TAG, tlv } from './der';
import { RSA_SIGNATURE_OIDS } from './keys';
import { nativeP256 } from '../common/native';

/** X.509 building blocks shared by certificates and CSRs: names, extensions, signatures. */

export const OID = {
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
} as const;

/** KeyUsage bits, numbered as in RFC 5280. */
export const KEY_USAGE = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;
export type KeyUsageName = keyof typeof KEY_USAGE;

export function encodeKeyUsage(names: KeyUsageName[]): Buffer {
  let bits = 0;
  for (const n of names) bits |= 1 << (15 - KEY_USAGE[n]);
  const bytes = bits & 0xff ? Buffer.from([bits >> 8, bits & 0xff]) : Buffer.from([bits >> 8]);
  const last = bytes[bytes.length - 1];
  let unused = 0;
  while (unused < 7 && !(last & (1 << unused))) unused++;
  return bitString(bytes, last === 0 ? 0 : unused);
}

export function decodeKeyUsage(value: Buffer): Set<KeyUsageName> {
  const node = expectTag(readWhole(value, 'KeyUsage'), TAG.BIT_STRING, 'KeyUsage');
  const bytes = node.content.subarray(1);
  const out = new Set<KeyUsageName>();
  for (const [name, bit] of Object.entries(KEY_USAGE) as [KeyUsageName, number][]) {
    const byte = bytes[bit >> 3] ?? 0;
    if (byte & (0x80 >> (bit & 7))) out.add(name);
  }
  return out;
}

/** A Name of RDNs, each one attribute, as UTF8String. An empty list is the empty Name. */
export function encodeName(rdns: Array<[string, string]>): Buffer {
  return seq(...rdns.map(([type, value]) => set(seq(oid(type), tlv(TAG.UTF8_STRING, Buffer.from(value, 'utf8'))))));
}

export function decodeName(name: Buffer): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const rdn of children(readNode(name))) {
    for (const atv of children(rdn)) {
      const [type, value] = children(atv);
      const typeOid = decodeOid(expectTag(type, TAG.OID, 'Name attribute').content);
      if (!value) throw new DerError(`Name attribute ${typeOid}: missing its value`);
      out.push([typeOid, value.content.toString('utf8')]);
    }
  }
  return out;
}

export interface SubjectAltNames {
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
  emails: string[];
  /** Any other GeneralName kind (otherName, x400, directoryName, ...), by context tag number. */
  others: number[];
}

export function encodeSubjectAltNames(san: Partial<SubjectAltNames>): Buffer {
  const names: Buffer[] = [];
  for (const d of san.dnsNames ?? []) names.push(contextTag(2, false, Buffer.from(d, 'latin1')));
  for (const u of san.uris ?? []) names.push(contextTag(6, false, Buffer.from(u, 'latin1')));
  for (const ip of san.ipAddresses ?? []) names.push(contextTag(7, false, encodeIp(ip)));
  return seq(...names);
}

function encodeIp(ip: string): Buffer {
  if (ip.includes(':')) {
    const [head, tail = ''] = ip.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
  }
  return Buffer.from(ip.split('.').map(Number));
}

export function decodeSubjectAltNames(value: Buffer): SubjectAltNames {
  const out: SubjectAltNames = { uris: [], dnsNames: [], ipAddresses: [], emails: [], others: [] };
  for (const gn of children(expectTag(readWhole(value, 'SubjectAltName'), TAG.SEQUENCE, 'SubjectAltName'))) {
    const n = gn.tag & 0x1f;
    if (gn.tag === 0x86) out.uris.push(gn.content.toString('latin1'));
    else if (gn.tag === 0x82) out.dnsNames.push(gn.content.toString('latin1'));
    else if (gn.tag === 0x81) out.emails.push(gn.content.toString('latin1'));
    else if (gn.tag === 0x87) out.ipAddresses.push(gn.content.length === 4 ? [...gn.content].join('.') : gn.content.toString('hex'));
    else out.others.push(n);
  }
  return out;
}

export function encodeExtKeyUsage(oids: string[]): Buffer {
  return seq(...oids.map((o) => oid(o)));
}

export function decodeExtKeyUsage(value: Buffer): string[] {
  return children(expectTag(readWhole(value, 'ExtKeyUsage'), TAG.SEQUENCE, 'ExtKeyUsage')).map((n) =>
    decodeOid(expectTag(n, TAG.OID, 'ExtKeyUsage purpose').content),
  );
}

export interface Extension {
  oid: string;
  critical: boolean;
  value: Buffer;
}

export function encodeExtension(extOid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(extOid), bool(true), octets(value)) : seq(oid(extOid), octets(value));
}

export function decodeExtensions(seqNode: Buffer): Extension[] {
  return children(expectTag(readWhole(seqNode, 'Extensions'), TAG.SEQUENCE, 'Extensions')).map((ext) => {
    const parts = children(ext);
    const extOid = decodeOid(expectTag(parts[0], TAG.OID, 'Extension id').content);
    const critical = parts.length === 3 ? parts[1].content[0] !== 0 : false;
    const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, `Extension ${extOid} value`).content;
    return { oid: extOid, critical, value };
  });
}

/** AlgorithmIdentifier for a signature: ECDSA carries no parameters, RSA carries NULL. */
export function signatureAlgorithm(sigOid: string): Buffer {
  return RSA_SIGNATURE_OIDS.has(sigOid) ? seq(oid(sigOid), nullValue()) : seq(oid(sigOid));
}

/** Key identifier: SHA-1 of the subjectPublicKey BIT STRING content (RFC 5280 method 1). */
export function keyIdentifier(spki: Buffer): Buffer {
  const [, pubKey] = children(readWhole(spki, 'SubjectPublicKeyInfo'));
  return hash('sha1', pubKey.content.subarray(1), 'buffer') as unknown as Buffer;
}

// Serials are drawn from a refilled pool: one CSPRNG call per 256 certificates, not per certificate.
const SERIAL_POOL = 4096;
let serialPool = Buffer.alloc(0);
let serialOffset = SERIAL_POOL;

/** A positive 128-bit random serial number. */
export function randomSerial(): Buffer {
  if (serialOffset >= serialPool.length) {
    serialPool = randomBytes(SERIAL_POOL);
    serialOffset = 0;
  }
  const b = Buffer.from(serialPool.subarray(serialOffset, serialOffset + 16));
  serialPool.fill(0, serialOffset, serialOffset + 16); // a used serial never stays in memory twice
  serialOffset += 16;
  b[0] = (b[0] & 0x7f) | 0x01;
  return b;
}

/** Signs a TBS structure and wraps it as a Certificate or CertificationRequest: SEQUENCE{tbs, alg, sig}. */
export function signStructure(tbs: Buffer, algDer: Buffer, key: KeyObject | Signer, hash: string): Buffer {
  const signature = 'sign' in key ? key.sign(tbs) : sign(hash, tbs, key);
  return seq(tbs, algDer, bitString(signature));
}

/** A private key ready to sign many times (the CA's): the native P-256 signer when built. */
export interface Signer {
  sign(data: Buffer): Buffer;
}

export function makeSigner(key: KeyObject, hash: string): Signer {
  if (nativeP256 && hash === 'sha256' && key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    const handle = nativeP256.p256Signer(key.export({ format: 'der', type: 'sec1' }));
    return { sign: (data) => nativeP256!.signP256Sha256(handle, data) };
  }
  return { sign: (data) => sign(hash, data, key) };
}

