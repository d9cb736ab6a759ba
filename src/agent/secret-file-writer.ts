import { EventEmitter } from 'node:events';
import type { SecretsUpdate, WorkloadSecret } from '../api/ca-api';
import type { BackoffOptions } from '../common/backoff';
import { forEachLimited } from '../common/concurrency';
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import { checkBundle } from '../pki/bundle';
import { AccountRef, accountKey, workloadIdentity } from '../pki/identity';
import { splitCertificates } from '../pki/pem';
import { Bundle, CertsDirectory } from './certs-directory';
import { followFeed } from './feed';
import type { NodeCredentials } from './node-credential';
import type { TrustBundle } from './trust-bundle';

export interface SecretFileWriterOptions {
  certs: CertsDirectory;
  credentials: NodeCredentials;
  trustDomain: string;
  /** --ca-root: each secret's root must be one of its roots; root-cert.pem is that root, then the others. */
  trust: TrustBundle;
  logger: Logger;
  backoff?: BackoffOptions;
  signal: AbortSignal;
}

/**
 * File mode (Citadel 1.0.5's compromise): keeps `<certs-dir>/<ns>/<sa>/` equal to the Citadel
 * secrets the CA's secret feed says this node is entitled to. Every secret is checked before a
 * byte is written; while the CA is unreachable the files stay as they are. root-cert.pem is the
 * secret's root, then the other roots of --ca-root, so that during a root rotation workloads on
 * either root trust each other (with one root it is the secret's root, as Citadel 1.0 wrote it).
 * Emits `synced` after each applied update with the identities now present.
 */
export class SecretFileWriter extends EventEmitter {
  private applying: Promise<void> = Promise.resolve();
  /** accountKey -> version this process wrote; saves reading the files back before each write. */
  private readonly written = new Map<string, string>();
  private loop: Promise<void> | undefined;
  /** The parts of a snapshot received so far (a large one comes in several messages). */
  private partial: WorkloadSecret[] | undefined;

  constructor(private readonly opts: SecretFileWriterOptions) {
    super();
  }

  start(): void {
    this.loop ??= followFeed({
      what: 'secret feed',
      credentials: this.opts.credentials,
      open: (client) => client.watchSecrets(),
      onOpen: () => (this.partial = undefined),
      onMessage: (part) => {
        const u = this.assemble(part);
        if (!u) return;
        this.applying = this.applying.then(() => this.apply(u)).catch((err) => this.opts.logger.error('cannot apply secrets', { error: errorMessage(err) }));
      },
      backoff: this.opts.backoff,
      logger: this.opts.logger,
      signal: this.opts.signal,
    });
  }

  async stopped(): Promise<void> {
    await this.loop;
    await this.applying;
  }

  /**
   * The update to apply, once whole: a snapshot's parts are gathered until the last, so that what
   * a later part brings is never removed (and written again) for missing from an earlier one.
   */
  private assemble(u: SecretsUpdate): SecretsUpdate | undefined {
    if (!u.snapshot) return u;
    const secrets = this.partial ? [...this.partial, ...u.secrets] : u.secrets;
    if (u.more) {
      this.partial = secrets;
      return undefined;
    }
    this.partial = undefined;
    return { snapshot: true, secrets, removed: u.removed };
  }

  /** Applies one feed update to the certs directory; a snapshot also removes what is not in it. */
  private async apply(u: SecretsUpdate): Promise<void> {
    const { certs } = this.opts;
    const present = new Set((await certs.list()).map(accountKey));
    await forEachLimited(u.secrets, 8, (s) => this.writeSecret(s, present.has(accountKey(s))));
    const wanted = new Set(u.secrets.map(accountKey));
    const gone: AccountRef[] = u.snapshot ? (await certs.list()).filter((a) => !wanted.has(accountKey(a))) : u.removed;
    for (const a of gone) {
      await certs.remove(a);
      this.written.delete(accountKey(a));
      this.opts.logger.info('identity left this node; removed its certificates', { namespace: a.namespace, serviceAccount: a.serviceAccount });
    }
    this.emit('synced', await certs.list());
  }

  private async writeSecret(s: WorkloadSecret, present: boolean): Promise<void> {
    const k = accountKey(s);
    if (present && this.written.get(k) === s.version) return;
    const problem = this.problemWith(s);
    if (problem) {
      this.opts.logger.error('refusing a secret from the CA; keeping the current files', { namespace: s.namespace, serviceAccount: s.serviceAccount, problem });
      return;
    }
    const bundle: Bundle = { 'cert-chain.pem': s.certChain, 'key.pem': s.key, 'root-cert.pem': this.opts.trust.leadingWith(s.rootCert) };
    const { certs } = this.opts;
    // Files left by an earlier run are read once, so that a restart rewrites nothing that is current.
    const current = present && !this.written.has(k) ? await certs.read(s).catch(() => undefined) : undefined;
    const same = current && current['cert-chain.pem'] === bundle['cert-chain.pem'] && current['key.pem'] === bundle['key.pem'] && current['root-cert.pem'] === bundle['root-cert.pem'];
    if (!same) await certs.write(s, bundle, !present);
    this.written.set(k, s.version);
    this.opts.logger.debug('wrote certificates', { namespace: s.namespace, serviceAccount: s.serviceAccount, version: s.version });
  }

  /**
   * What is wrong with a delivered secret, by the one bundle check: its root must be one of
   * --ca-root, its chain must lead to that root, it must name its identity, and its key must be its
   * certificate's. The feed is authenticated (the server's certificate chains to --ca-root), so
   * this guards against a wrong or damaged secret.
   */
  private problemWith(s: WorkloadSecret): string | undefined {
    try {
      const roots = splitCertificates(s.rootCert);
      if (roots.length !== 1 || !this.opts.trust.trusts(roots[0])) return 'its root-cert.pem is not one root of --ca-root';
      const expected = workloadIdentity(this.opts.trustDomain, s.namespace, s.serviceAccount);
      const check = checkBundle({ certChainPem: s.certChain, keyPem: s.key, rootCertPem: s.rootCert }, { trustedRootPem: roots[0], expected });
      return check.ok ? undefined : check.problems.join('; ');
    } catch (err) {
      return errorMessage(err);
    }
  }
}
