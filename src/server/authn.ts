/** Who is calling: the identity of a TLS client certificate that chains to our root. */
import { parseCertificateDer } from '../pki/certificate';
import { Identity, NodeIdentity, spiffeId, WorkloadIdentity } from '../pki/identity';
import { identityOfCertificate } from '../pki/verify';
import type { CallContext } from '../api/grpc/server';

interface CallerBase {
  spiffeId: string;
  /** Of the client certificate: its serial (hex) and validity. */
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}
/** A workload presenting its own certificate (it may renew its own identity only). */
export interface WorkloadCaller extends CallerBase {
  identity: WorkloadIdentity;
}
/** A Mesos agent's node agent presenting its node certificate. */
export interface NodeCaller extends CallerBase {
  identity: NodeIdentity;
}
export type Caller = WorkloadCaller | NodeCaller;

export function isNodeCaller(c: Caller): c is NodeCaller {
  return c.identity.kind === 'node';
}

export type CallerResult = { ok: true; caller: Caller } | { ok: false; reason: 'unauthenticated' | 'id-extraction'; message: string };

const CACHE_LIMIT = 8192;

/**
 * Authenticates gRPC callers by their client certificate. TLS has already verified the chain to
 * our root (the server asks for a certificate and leaves `authorized` false for a missing or
 * foreign one); this reads the one SPIFFE ID, checks the trust domain, and checks expiry at every
 * call because a connection outlives a certificate. Parsed identities are cached by fingerprint.
 */
export class CallerAuthenticator {
  private readonly cache = new Map<string, Caller | { error: string }>();
  /** Per HTTP/2 connection: its peer cannot change, so it is read once, not at every call. */
  private readonly bySession = new WeakMap<object, Caller | { error: string } | undefined>();

  constructor(private readonly trustDomain: string, private readonly now: () => number = Date.now) {}

  authenticate(ctx: CallContext): CallerResult {
    let entry = this.bySession.get(ctx.session);
    if (!entry) {
      entry = this.fromPeer(ctx);
      this.bySession.set(ctx.session, entry);
    }
    if (!entry) {
      return { ok: false, reason: 'unauthenticated', message: 'no client certificate from this CA: present a certificate issued by the Citadel root (or attest the node with a join token first)' };
    }
    if ('error' in entry) return { ok: false, reason: 'id-extraction', message: entry.error };
    if (entry.notAfter.getTime() <= this.now()) {
      return { ok: false, reason: 'unauthenticated', message: `the client certificate of ${entry.spiffeId} expired at ${entry.notAfter.toISOString()}` };
    }
    return { ok: true, caller: entry };
  }

  private fromPeer(ctx: CallContext): Caller | { error: string } | undefined {
    if (!ctx.tls?.authorized) return undefined; // none, or not from our root
    const cert = ctx.tls.getPeerCertificate();
    if (!cert?.raw) return undefined;
    let entry = this.cache.get(cert.fingerprint256);
    if (!entry) {
      entry = this.parse(cert.raw);
      if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(cert.fingerprint256, entry);
    }
    return entry;
  }

  private parse(der: Buffer): Caller | { error: string } {
    try {
      const cert = parseCertificateDer(der);
      const identity: Identity = identityOfCertificate(cert);
      if (identity.trustDomain !== this.trustDomain) {
        return { error: `the client certificate is for trust domain ${identity.trustDomain}, not ${this.trustDomain}` };
      }
      const base = { spiffeId: spiffeId(identity), serialHex: cert.serialHex, notBefore: cert.notBefore, notAfter: cert.notAfter };
      return identity.kind === 'node' ? { ...base, identity } : { ...base, identity };
    } catch (err) {
      return { error: `cannot read an identity from the client certificate: ${(err as Error).message}` };
    }
  }
}
