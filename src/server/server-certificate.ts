import { isIP } from 'node:net';
import type { experimental } from '@grpc/grpc-js';
import { CertificateAuthority } from '../ca/authority';
import { Logger } from '../common/log';
import { generateKeyPair, privateKeyToPem, spkiDer } from '../pki/keys';

type CertificateProvider = experimental.CertificateProvider;
type IdentityListener = experimental.IdentityCertificateUpdateListener;
type CaListener = experimental.CaCertificateUpdateListener;

/** Citadel's server certificate names; `--grpc-host-identities` adds to them. */
export const DEFAULT_SERVER_NAMES = ['istio-ca', 'istio-citadel'];

/**
 * The gRPC server's own TLS certificate, issued by the CA for a key it generates, renewed at half
 * its lifetime and handed to grpc-js as a certificate provider so that new connections pick up
 * the renewed certificate without a restart.
 */
export class ServerCertificate implements CertificateProvider {
  private identityListeners = new Set<IdentityListener>();
  private caListeners = new Set<CaListener>();
  private current!: { certificate: Buffer; privateKey: Buffer; notAfter: Date };
  private timer: NodeJS.Timeout | undefined;
  readonly dnsNames: string[];
  readonly ipAddresses: string[];

  constructor(private readonly ca: CertificateAuthority, hostIdentities: string[], private readonly logger: Logger, private readonly ttlMs = ca.config.workloadCertTtlMs) {
    const names = [...new Set([...DEFAULT_SERVER_NAMES, ...hostIdentities.map((h) => h.trim()).filter(Boolean)])];
    this.dnsNames = names.filter((n) => !isIP(n));
    this.ipAddresses = names.filter((n) => isIP(n));
    this.renew();
  }

  get notAfter(): Date {
    return this.current.notAfter;
  }

  /** Issues a fresh key and certificate, tells grpc-js, and schedules the next renewal. */
  renew(now = new Date()): void {
    const pair = generateKeyPair('ec-p256');
    const issued = this.ca.issue(spkiDer(pair.publicKey), undefined, this.ttlMs, now, { dnsNames: this.dnsNames, ipAddresses: this.ipAddresses });
    this.current = {
      certificate: Buffer.from(issued.certPem + issued.intermediatePems.join('')),
      privateKey: Buffer.from(privateKeyToPem(pair.privateKey)),
      notAfter: issued.notAfter,
    };
    for (const l of this.identityListeners) l({ certificate: this.current.certificate, privateKey: this.current.privateKey });
    const lifetime = issued.notAfter.getTime() - now.getTime();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      try {
        this.renew();
      } catch (err) {
        this.logger.error('cannot renew the gRPC server certificate; retrying in 1 minute', { error: (err as Error).message });
        this.timer = setTimeout(() => this.renew(), 60_000).unref();
      }
    }, Math.max(1000, Math.min(lifetime / 2, 2 ** 31 - 1))).unref();
    this.logger.info('gRPC server certificate issued', { names: [...this.dnsNames, ...this.ipAddresses], notAfter: issued.notAfter.toISOString() });
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    // grpc-js registers its own watcher only after this returns: deliver on the next tick.
    process.nextTick(() => this.identityListeners.has(listener) && listener({ certificate: this.current.certificate, privateKey: this.current.privateKey }));
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(() => this.caListeners.has(listener) && listener({ caCertificate: Buffer.from(this.ca.rootCertPem) }));
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
}
