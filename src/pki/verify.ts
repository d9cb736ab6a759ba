import { KeyObject } from 'node:crypto';
import { parseCertificateDer, ParsedCertificate } from './certificate';
import { Identity, parseSpiffeId } from './identity';
import { children, decodeOid, readWhole } from './der';
import { hashForSignatureOid, p256SpkiOfPrivateKeyPem, privateKeyFromPem, spkiDer, verifyWithSpki } from './keys';
import { parsePemBlocks } from './pem';
import { OID } from './x509';

/** The X.509-SVID rules for a leaf (spiffe/spiffe X509-SVID.md); returns each rule broken. */
export function svidProblems(leaf: ParsedCertificate): string[] {
  const problems: string[] = [];
  const uris = leaf.san?.uris ?? [];
  if (uris.length !== 1) problems.push(`an SVID has exactly one URI SAN; this certificate has ${uris.length}`);
  else {
    try {
      parseSpiffeId(uris[0]);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const sanExt = leaf.extensions.find((e) => e.oid === OID.subjectAltName);
  if (leaf.subject.length === 0 && sanExt && !sanExt.critical) problems.push('the subject is empty, so the SAN extension must be critical');
  if (leaf.isCa) problems.push('a leaf SVID must have CA false');
  const ku = leaf.extensions.find((e) => e.oid === OID.keyUsage);
  if (!ku || !leaf.keyUsage) problems.push('KeyUsage must be present');
  else {
    if (!ku.critical) problems.push('KeyUsage must be critical');
    if (!leaf.keyUsage.has('digitalSignature')) problems.push('KeyUsage must include digitalSignature');
    if (leaf.keyUsage.has('keyCertSign') || leaf.keyUsage.has('cRLSign')) problems.push('a leaf must not have keyCertSign or cRLSign');
  }
  if (leaf.extKeyUsage && !(leaf.extKeyUsage.includes(OID.serverAuth) && leaf.extKeyUsage.includes(OID.clientAuth))) {
    problems.push('ExtKeyUsage must include both serverAuth and clientAuth');
  }
  return problems;
}

/** The one SPIFFE ID of a certificate (its only URI SAN), parsed into an identity. */
export function identityOfCertificate(cert: ParsedCertificate): Identity {
  const uris = cert.san?.uris ?? [];
  if (uris.length !== 1) throw new Error(`certificate has ${uris.length} URI SANs; an SVID has exactly one`);
  return parseSpiffeId(uris[0]);
}

export interface ChainCheck {
  ok: boolean;
  problems: string[];
  leaf?: ParsedCertificate;
}

/**
 * Verifies leaf -> intermediates -> root: each signature, each issuer a CA with keyCertSign,
 * every certificate valid at `now`. `chainPem` is leaf first, then intermediates (may also
 * end with the root); `rootPem` holds the trusted root(s): the chain must reach one of them.
 */
export function verifyChain(chainPem: string, rootPem: string, now = new Date()): ChainCheck {
  const problems: string[] = [];
  const chainDer = parsePemBlocks(chainPem).filter((b) => b.label === 'CERTIFICATE').map((b) => b.der);
  if (chainDer.length === 0) return { ok: false, problems: ['the chain holds no certificate'] };
  let chain: ParsedCertificate[];
  let roots: ParsedCertificate[];
  try {
    roots = trustedRoots(rootPem);
    chain = chainDer.map(parseCertificateDer);
  } catch (err) {
    return { ok: false, problems: [`a certificate does not parse: ${(err as Error).message}`] };
  }
  if (roots.length === 0) return { ok: false, problems: ['no root certificate given'] };
  const leaf = chain[0];
  const checkValidity = (c: ParsedCertificate) => {
    if (now < c.notBefore) problems.push(`certificate ${c.serialHex.slice(0, 16)} is not valid until ${c.notBefore.toISOString()}`);
    if (now > c.notAfter) problems.push(`certificate ${c.serialHex.slice(0, 16)} expired at ${c.notAfter.toISOString()}`);
  };
  chain.forEach(checkValidity);
  // Walk up: each certificate must be signed by the next one, ending at a trusted root.
  let current = leaf;
  const rest = chain.slice(1);
  for (let depth = 0; depth < 10; depth++) {
    const signers = roots.filter((r) => r.subjectDer.equals(current.issuerDer) && signedBy(current, r));
    // An expired root and its re-issued copy (same name and key) may both be in a bundle: take one valid now.
    const root = signers.find((r) => r.notBefore <= now && now <= r.notAfter) ?? signers[0];
    if (root) {
      // Only the root the chain reaches: another root of a trust bundle may have expired meanwhile.
      if (!chain.some((c) => c.der.equals(root.der))) checkValidity(root);
      if (!isCaCert(root)) problems.push('the root is not a CA certificate (CA true with keyCertSign)');
      return { ok: problems.length === 0, problems, leaf };
    }
    if (roots.some((r) => r.der.equals(current.der))) return { ok: problems.length === 0, problems, leaf };
    const next = rest.find((c) => c.subjectDer.equals(current.issuerDer) && signedBy(current, c));
    if (!next) {
      problems.push(depth === 0 ? 'the certificate is not signed by the given root' : 'the chain does not lead to the given root');
      return { ok: false, problems, leaf };
    }
    if (!isCaCert(next)) problems.push('an intermediate in the chain is not a CA certificate');
    current = next;
  }
  problems.push('the chain is too long');
  return { ok: false, problems, leaf };
}

/** Parsed trust bundles, by PEM: an agent checks every delivered chain against the same root. */
const rootCache = new Map<string, ParsedCertificate[]>();
const ROOT_CACHE_SIZE = 8;

function trustedRoots(rootPem: string): ParsedCertificate[] {
  let roots = rootCache.get(rootPem);
  if (!roots) {
    roots = parsePemBlocks(rootPem).filter((b) => b.label === 'CERTIFICATE').map((b) => parseCertificateDer(b.der));
    if (rootCache.size >= ROOT_CACHE_SIZE) rootCache.delete(rootCache.keys().next().value!);
    rootCache.set(rootPem, roots);
  }
  return roots;
}

function isCaCert(c: ParsedCertificate): boolean {
  return c.isCa && (c.keyUsage === undefined || c.keyUsage.has('keyCertSign'));
}

function signedBy(child: ParsedCertificate, issuer: ParsedCertificate): boolean {
  try {
    const [tbs, sigAlg, sig] = children(readWhole(child.der, 'certificate'));
    const hash = hashForSignatureOid(decodeOid(children(sigAlg)[0].content));
    return verifyWithSpki(issuer.spkiDer, hash, tbs.raw, sig.content.subarray(1));
  } catch {
    return false;
  }
}

/** True when the private key is the one whose public key the certificate carries. */
export function keyMatchesCertificate(key: KeyObject, cert: ParsedCertificate): boolean {
  return spkiDer(key).equals(cert.spkiDer);
}

/** The same for a key as PEM; a P-256 key is matched without OpenSSL's decoders (the agent's hot path). */
export function keyPemMatchesCertificate(keyPem: string, cert: ParsedCertificate, what = 'private key'): boolean {
  let spki: Buffer | undefined;
  try {
    spki = p256SpkiOfPrivateKeyPem(keyPem);
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`);
  }
  return (spki ?? spkiDer(privateKeyFromPem(keyPem, what))).equals(cert.spkiDer);
}
