/**
 * The one check of a key-and-certificate bundle (Citadel's three files, a node credential, an
 * SDS secret): it chains to the trusted root, the leaf obeys the X.509-SVID rules and names the
 * expected identity, the key is the certificate's, and nothing has expired.
 */
import type { ParsedCertificate } from './certificate';
import { Identity, spiffeId } from './identity';
import { identityOfCertificate, keyPemMatchesCertificate, svidProblems, verifyChain } from './verify';

export interface KeyCertBundlePems {
  /** Leaf first, then the CA chain. */
  certChainPem: string;
  keyPem: string;
  /** The bundle's own root (root-cert.pem); the trust anchor unless `trustedRootPem` is given. */
  rootCertPem?: string;
}

export interface BundleCheckOptions {
  /** The root to verify against (e.g. the agent's --ca-root); default: the bundle's root. */
  trustedRootPem?: string;
  /** The identity the leaf must name. */
  expected?: Identity;
  now?: Date;
  /** How messages name the key (`key.pem` for a Citadel directory). */
  keyLabel?: string;
  /** The key's SPKI, when the caller made the key itself: matched instead of parsing `keyPem`. */
  keySpki?: Buffer;
}

export interface BundleCheck {
  ok: boolean;
  /** Every rule broken, each one line; empty when ok. */
  problems: string[];
  leaf?: ParsedCertificate;
}

export function checkBundle(b: KeyCertBundlePems, opts: BundleCheckOptions = {}): BundleCheck {
  const root = opts.trustedRootPem ?? b.rootCertPem;
  if (!root) return { ok: false, problems: ['no root certificate to verify against'] };
  const chain = verifyChain(b.certChainPem, root, opts.now);
  const problems = [...chain.problems];
  const leaf = chain.leaf;
  if (!leaf) return { ok: false, problems };
  problems.push(...svidProblems(leaf));
  if (opts.expected) {
    try {
      const got = spiffeId(identityOfCertificate(leaf));
      if (got !== spiffeId(opts.expected)) problems.push(`the certificate is for ${got}, not ${spiffeId(opts.expected)}`);
    } catch (err) {
      // already reported by svidProblems when the SAN is no SPIFFE ID of ours
      if (!problems.length) problems.push((err as Error).message);
    }
  }
  const keyLabel = opts.keyLabel ?? 'the private key';
  try {
    const matches = opts.keySpki ? opts.keySpki.equals(leaf.spkiDer) : keyPemMatchesCertificate(b.keyPem, leaf, keyLabel);
    if (!matches) problems.push(`${keyLabel} does not match the certificate`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  return { ok: problems.length === 0, problems, leaf };
}
