import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { UserError } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { certificatePem, issueCaDer, issueLeafDer, Issuer, makeIssuer, parseCertificatePem } from '../pki/certificate';
import { CsrError, parseAndValidateCsr } from '../pki/csr';
import { Identity, spiffeId } from '../pki/identity';
import { generateEncodedKeyPair, generateKeyPair, privateKeyFromPem, privateKeyToPem, spkiDer } from '../pki/keys';
import { splitCertificates } from '../pki/pem';
import { randomSerial } from '../pki/x509';
import { keyMatchesCertificate, verifyChain } from '../pki/verify';
import type { CaSecret, Store } from '../store/store';
import { CaConfig } from './config';

/** A request the policy refuses; `code` is Citadel's metric label. */
export class SigningError extends Error {
  constructor(readonly code: 'CSR_ERROR' | 'TTL_ERROR' | 'CA_NOT_READY' | 'CERT_GEN_ERROR', message: string) {
    super(message);
    this.name = 'SigningError';
  }
}

/** A signed certificate and what a caller needs with it. */
export interface IssuedCertificate {
  certPem: string;
  /** Intermediates between the leaf and the root (empty under a self-signed root). */
  intermediatePems: string[];
  rootCertPem: string;
  notBefore: Date;
  notAfter: Date;
  serialHex: string;
  /** The identity in its URI SAN (absent for the CA's own server certificate). */
  spiffeId?: string;
}

/** A Citadel secret's three files. */
export interface KeyCertBundle {
  /** Leaf, then the CA chain. */
  certChainPem: string;
  keyPem: string;
  rootCertPem: string;
  notBefore: Date;
  notAfter: Date;
  serialHex: string;
}

export interface ExtraSans {
  dnsNames?: string[];
  ipAddresses?: string[];
}

/**
 * The authority: a root (self-signed and persisted in the store as `istio-ca-secret`, or plugged
 * in from files), and the signing policy. The identity in a certificate always comes from the
 * caller, never from the CSR.
 */
export class CertificateAuthority {
  private constructor(
    readonly config: CaConfig,
    private readonly issuer: Issuer,
    readonly rootCertPem: string,
    readonly intermediatePems: string[],
    readonly selfSigned: boolean,
  ) {}

  get trustDomain(): string {
    return this.config.trustDomain;
  }

  /** The root's notAfter; a workload certificate never outlives its issuer. */
  get issuerNotAfter(): Date {
    return this.issuer.notAfter;
  }

  /** Loads the CA: a plugged-in bundle from files (checked first), or the persisted self-signed root, created on first start. */
  static async open(store: Store | undefined, config: CaConfig, logger: Logger = silentLogger): Promise<CertificateAuthority> {
    if (config.plugged) return CertificateAuthority.fromFiles(config);
    if (!store) throw new Error('a self-signed CA needs a store to persist its root');
    let secret = await store.getCaSecret();
    if (!secret) {
      const candidate = createSelfSignedRoot(config);
      secret = await store.createCaSecretIfAbsent(candidate);
      if (secret.caCertPem === candidate.caCertPem) logger.info('created self-signed root', rootFields(secret.caCertPem));
    }
    return CertificateAuthority.fromSecret(secret, config);
  }

  static fromSecret(secret: CaSecret, config: CaConfig): CertificateAuthority {
    let key;
    try {
      key = privateKeyFromPem(secret.caKeyPem, 'istio-ca-secret ca-key.pem');
    } catch (err) {
      throw new UserError(`the stored CA key cannot be read: ${(err as Error).message}`);
    }
    const cert = parseCertificatePem(secret.caCertPem, 'istio-ca-secret ca-cert.pem');
    if (!keyMatchesCertificate(key, cert)) throw new UserError('the stored CA key does not match the stored CA certificate');
    return new CertificateAuthority(config, makeIssuer(secret.caCertPem, key), secret.caCertPem, [], true);
  }

  /** Citadel's plugged-in CA: the bundle is checked before use and refused with a one-line reason. */
  static fromFiles(config: CaConfig): CertificateAuthority {
    const files = config.plugged!;
    const read = (path: string, flag: string) => {
      try {
        return readFileSync(path, 'utf8');
      } catch (err) {
        throw new UserError(`${flag} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    };
    const signingPem = read(files.signingCert, '--signing-cert');
    const keyPem = read(files.signingKey, '--signing-key');
    const rootPem = read(files.rootCert, '--root-cert');
    const chainPem = files.certChain ? read(files.certChain, '--cert-chain') : '';
    let key, signing, root;
    try {
      key = privateKeyFromPem(keyPem, '--signing-key');
      signing = parseCertificatePem(splitCertificates(signingPem)[0] ?? signingPem, '--signing-cert');
      root = parseCertificatePem(splitCertificates(rootPem)[0] ?? rootPem, '--root-cert');
    } catch (err) {
      throw new UserError(`plugged-in CA refused: ${(err as Error).message}`);
    }
    if (!keyMatchesCertificate(key, signing)) throw new UserError('plugged-in CA refused: --signing-key does not match --signing-cert');
    if (!signing.isCa || (signing.keyUsage && !signing.keyUsage.has('keyCertSign'))) {
      throw new UserError('plugged-in CA refused: --signing-cert is not a CA certificate (needs CA true and keyCertSign)');
    }
    if (!root.isCa) throw new UserError('plugged-in CA refused: --root-cert is not a CA certificate');
    const rootOnly = splitCertificates(rootPem)[0];
    const signingOnly = splitCertificates(signingPem)[0];
    const isRoot = signing.der.equals(root.der);
    // The CA chain below the root: the signing cert (unless it is the root), then --cert-chain's intermediates.
    const intermediates: string[] = [];
    if (!isRoot) intermediates.push(signingOnly);
    for (const pem of splitCertificates(chainPem)) {
      if (pem !== rootOnly && !intermediates.includes(pem)) intermediates.push(pem);
    }
    const check = verifyChain(intermediates.join('') || signingOnly, rootOnly);
    if (!check.ok) throw new UserError(`plugged-in CA refused: the signing certificate does not chain to --root-cert (${check.problems[0]})`);
    return new CertificateAuthority(config, makeIssuer(signingOnly, key), rootOnly, intermediates, false);
  }

  /** Applies Citadel's TTL policy: none or non-positive -> the default; above the maximum -> TTL_ERROR. */
  resolveTtl(requestedMs?: number): number {
    if (requestedMs === undefined || !(requestedMs > 0)) return this.config.workloadCertTtlMs;
    if (requestedMs > this.config.maxWorkloadCertTtlMs) {
      throw new SigningError('TTL_ERROR', `requested TTL ${Math.round(requestedMs / 1000)}s is above the maximum ${Math.round(this.config.maxWorkloadCertTtlMs / 1000)}s (--max-workload-cert-ttl)`);
    }
    return requestedMs;
  }

  /**
   * The one signing path for CSRs (the gRPC handlers, `cert` tooling and the benchmark alike):
   * strict validation of the CSR, the subject decided by the caller's authority, the CSR naming
   * exactly that subject, then Citadel's TTL policy. `subject` is the identity to sign for, or a
   * function from the CSR's URI SANs to it (a node asking for a workload placed on it), which
   * throws to refuse; it runs only on a CSR that passed validation.
   */
  signCsr(csr: string | Buffer, subject: Identity | ((requestedUris: string[]) => Identity), requestedTtlMs?: number, now = new Date()): IssuedCertificate {
    const parsed = parseAndValidateCsr(csr);
    const identity = typeof subject === 'function' ? subject(parsed.uris) : subject;
    const id = spiffeId(identity);
    if (parsed.uris.length !== 1 || parsed.uris[0] !== id) {
      throw new CsrError('identity', `CSR asks for ${parsed.uris.join(', ') || 'no URI SAN'} but the caller is ${id}; a CSR may only name the caller's own identity`);
    }
    return this.issue(parsed.spki, id, this.resolveTtl(requestedTtlMs), now);
  }

  /** Issues for a public key we already trust (our own generated keys, the CA's server certificate). */
  issue(spki: Buffer, id: string | undefined, ttlMs: number, now = new Date(), extra: ExtraSans = {}): IssuedCertificate {
    const notBefore = new Date(now.getTime() - this.config.clockSkewMs);
    const notAfter = new Date(now.getTime() + ttlMs);
    const serial = randomSerial();
    let der;
    try {
      der = issueLeafDer(this.issuer, { spki, spiffeId: id, notBefore, notAfter, serial, ...extra });
    } catch (err) {
      throw new SigningError('CERT_GEN_ERROR', `cannot sign the certificate: ${(err as Error).message}`);
    }
    return {
      certPem: certificatePem(der),
      intermediatePems: this.intermediatePems,
      rootCertPem: this.rootCertPem,
      notBefore,
      notAfter: notAfter > this.issuer.notAfter ? this.issuer.notAfter : notAfter,
      serialHex: serial.toString('hex'),
      spiffeId: id,
    };
  }

  /** Generates a key and certificate for an identity: a Citadel 1.0 secret's contents. */
  issueKeyCertBundle(identity: Identity, ttlMs?: number, now = new Date()): KeyCertBundle {
    const ttl = this.resolveTtl(ttlMs);
    const pair = generateEncodedKeyPair(this.config.keyAlgorithm);
    const issued = this.issue(pair.spki, spiffeId(identity), ttl, now);
    return {
      certChainPem: issued.certPem + issued.intermediatePems.join(''),
      keyPem: pair.privateKeyPem,
      rootCertPem: this.rootCertPem,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      serialHex: issued.serialHex,
    };
  }
}

/** A new self-signed root: CA true, keyCertSign|cRLSign, Subject O=<trust domain>. */
export function createSelfSignedRoot(config: CaConfig, now = new Date()): CaSecret {
  const pair = generateKeyPair(config.keyAlgorithm);
  const der = issueCaDer(
    { selfSignKey: pair.privateKey },
    {
      organization: config.trustDomain,
      spki: spkiDer(pair.publicKey),
      notBefore: new Date(now.getTime() - config.clockSkewMs),
      notAfter: new Date(now.getTime() + config.selfSignedCaCertTtlMs),
    },
  );
  return { caCertPem: certificatePem(der), caKeyPem: privateKeyToPem(pair.privateKey) };
}

export function rootFields(pem: string): { subject: string; notAfter: string; sha256: string } {
  const c = new X509Certificate(pem);
  return { subject: c.subject.replace(/\n/g, ','), notAfter: new Date(c.validTo).toISOString(), sha256: c.fingerprint256 };
}
