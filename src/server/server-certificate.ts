import { isIP } from 'node:net';
import { CertificateAuthority } from '../ca/authority';
import { Logger } from '../common/log';
import { renewalTime } from '../ca/rotation';
import { generateEncodedKeyPair } from '../pki/keys';

/** What a TLS server needs: our chain and key, and the root that client certificates must chain to. */
export interface ServerTls {
  cert: string;
  key: string;
  ca: string;
}

/** Citadel's server certificate names, and istiod's (the name xDS clients check); `--grpc-host-identities` adds to them. */
export const DEFAULT_SERVER_NAMES = ['istio-ca', 'istio-citadel', 'istiod'];

const RETRY_MS = 60_000;

/**
 * The gRPC server's own TLS certificate, issued by the CA for a key it generates, renewed at half
 * its lifetime; listeners put the renewed certificate in place for new connections, without a
 * restart.
 */
export class ServerCertificate {
  private listeners = new Set<(tls: ServerTls) => void>();
  private current!: ServerTls & { notAfter: Date };
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

  /** Issues a fresh key and certificate, tells the listeners, and schedules the next renewal. */
  renew(now = new Date()): void {
    const pair = generateEncodedKeyPair('ec-p256');
    const issued = this.ca.issue(pair.spki, undefined, this.ttlMs, now, { dnsNames: this.dnsNames, ipAddresses: this.ipAddresses });
    this.current = { cert: issued.certPem + issued.intermediatePems.join(''), key: pair.privateKeyPem, ca: this.ca.rootCertPem, notAfter: issued.notAfter };
    for (const l of this.listeners) l(this.tls);
    this.schedule(renewalTime(now, issued.notAfter).getTime() - now.getTime());
    this.logger.info('gRPC server certificate issued', { names: [...this.dnsNames, ...this.ipAddresses], notAfter: issued.notAfter.toISOString() });
  }

  /** The next renewal; a failed one is retried every minute, for as long as it fails, and never throws out of the timer. */
  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      try {
        this.renew();
      } catch (err) {
        this.logger.error('cannot renew the gRPC server certificate; retrying in 1 minute', { error: (err as Error).message, notAfter: this.current.notAfter.toISOString() });
        this.schedule(RETRY_MS);
      }
    }, Math.max(1000, Math.min(delayMs, 2 ** 31 - 1))).unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  get tls(): ServerTls {
    return { cert: this.current.cert, key: this.current.key, ca: this.current.ca };
  }

  /** Called with each renewed certificate. */
  onRenew(listener: (tls: ServerTls) => void): void {
    this.listeners.add(listener);
  }
}
