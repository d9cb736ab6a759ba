import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { status as grpcStatus, type ClientReadableStream } from '@grpc/grpc-js';
import { Backoff, BackoffOptions, sleep } from '../common/backoff';
import { forEachLimited } from '../common/concurrency';
import { errorMessage, UserError } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { createCsr } from '../pki/csr';
import { nodeIdentity, NodeIdentity, spiffeId, workloadIdentity } from '../pki/identity';
import { generateKeyPair, privateKeyToPem } from '../pki/keys';
import { identityOfCertificate, verifyChain } from '../pki/verify';
import type { SecretsUpdate, WorkloadSecret } from '../server/api';
import { CaClient } from './ca-client';
import { Bundle, CertsDirectory } from './certs-directory';
import { credentialFromChain, NodeCredential, NodeCredentialFile } from './node-credential';
import { renewalTime } from '../ca/rotation';

export interface FileAgentOptions {
  /** host:port of the CA's gRPC API (8060). */
  caAddress: string;
  /** The Citadel root (PEM) that the server and every delivered certificate must chain to. */
  caRootPem: string;
  /** One-time join token; needed only when there is no valid node certificate in the state directory. */
  joinToken?: string;
  /** This Mesos agent's hostname, as Marathon reports it for tasks. */
  host: string;
  trustDomain?: string;
  certsDir: string;
  /** Where the node key and certificate live (default `<certs-dir>/.citadel-agent`). */
  stateDir?: string;
  /** Lifetime asked for the node certificate (default: the CA's default). */
  nodeCertTtlMs?: number;
  /** The name to check in the CA's server certificate (default istio-ca). */
  serverName?: string;
  logger?: Logger;
  backoff?: BackoffOptions;
  /** fsync files and directories (default true). */
  durable?: boolean;
}

const RETRYABLE = new Set([grpcStatus.UNAVAILABLE, grpcStatus.DEADLINE_EXCEEDED, grpcStatus.RESOURCE_EXHAUSTED, grpcStatus.INTERNAL, grpcStatus.UNKNOWN, grpcStatus.CANCELLED]);

/**
 * The node agent in file mode: attests the node with a join token (once), keeps its node
 * certificate renewed, and keeps `<certs-dir>/<ns>/<sa>/` equal to the Citadel secrets the CA's
 * feed says this node is entitled to. While the CA is unreachable the files stay as they are.
 *
 * Events: `credential` (node certificate obtained or renewed), `synced` (an update was applied;
 * argument: the identities now present), `error` is never emitted; problems are logged.
 */
export class FileAgent extends EventEmitter {
  readonly certs: CertsDirectory;
  private readonly credentialFile: NodeCredentialFile;
  private readonly node: NodeIdentity;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private credential: NodeCredential | undefined;
  private client: CaClient | undefined;
  private stream: ClientReadableStream<SecretsUpdate> | undefined;
  private applying: Promise<void> = Promise.resolve();
  private loops: Promise<void>[] = [];
  /** "ns/sa" -> version this process wrote; saves reading the files back before each write. */
  private readonly written = new Map<string, string>();

  constructor(private readonly opts: FileAgentOptions) {
    super();
    this.node = nodeIdentity(opts.trustDomain ?? 'cluster.local', opts.host);
    this.certs = new CertsDirectory(opts.certsDir, opts.durable ?? true);
    this.credentialFile = new NodeCredentialFile(opts.stateDir ?? path.join(opts.certsDir, '.citadel-agent'));
    this.log = (opts.logger ?? silentLogger).child({ component: 'agent', host: opts.host });
  }

  get nodeCredential(): NodeCredential | undefined {
    return this.credential;
  }

  /** Repairs the certs directory, obtains a node certificate (reusing a valid saved one), and starts feeding files. */
  async start(): Promise<void> {
    await this.certs.repair();
    this.credential = await this.obtainCredential();
    this.emit('credential', this.credential);
    this.loops.push(this.renewLoop(), this.feedLoop());
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.stream?.cancel();
    this.client?.close();
    await Promise.allSettled(this.loops);
    await this.applying;
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  // --- node credential ---------------------------------------------------------------------

  private async obtainCredential(): Promise<NodeCredential> {
    const saved = await this.credentialFile.load(this.opts.caRootPem, this.node);
    if (saved.credential) {
      this.log.info('reusing the saved node certificate', { notAfter: saved.credential.notAfter.toISOString() });
      return saved.credential;
    }
    if (saved.problem) this.log.warn('the saved node certificate cannot be used', { problem: saved.problem });
    if (!this.opts.joinToken) {
      throw new UserError(`no valid node certificate in ${this.credentialFile.dir} and no --join-token; create one with \`citadel token create --host ${this.opts.host}\``);
    }
    const backoff = new Backoff(this.opts.backoff);
    for (;;) {
      const key = generateKeyPair('ec-p256').privateKey;
      const client = new CaClient({ address: this.opts.caAddress, rootCertPem: this.opts.caRootPem, serverName: this.opts.serverName });
      try {
        const chain = await client.attestNode(this.opts.joinToken, this.opts.host, createCsr({ key, uris: [spiffeId(this.node)] }), ttlSeconds(this.opts.nodeCertTtlMs));
        const credential = credentialFromChain(privateKeyToPem(key), chain, this.opts.caRootPem, this.node);
        await this.credentialFile.save(credential);
        this.log.info('node attested', { identity: spiffeId(this.node), notAfter: credential.notAfter.toISOString() });
        return credential;
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== undefined && !RETRYABLE.has(code)) throw new UserError(`node attestation refused: ${(err as { details?: string }).details ?? errorMessage(err)}`);
        const delay = backoff.next();
        this.log.warn('cannot reach the CA to attest; retrying', { error: errorMessage(err), retryInMs: delay });
        if (this.stopped) throw new Error('stopped');
        await sleep(delay, this.abort.signal);
        if (this.stopped) throw new Error('stopped');
      } finally {
        client.close();
      }
    }
  }

  /** Renews the node certificate with itself at half its lifetime; retries with backoff while the CA is away. */
  private async renewLoop(): Promise<void> {
    const backoff = new Backoff(this.opts.backoff);
    while (!this.stopped) {
      const cred = this.credential!;
      const wait = renewalTime(cred.notBefore, cred.notAfter).getTime() - Date.now();
      if (wait > 0) await sleep(Math.min(wait, 2 ** 31 - 1), this.abort.signal);
      if (this.stopped) return;
      try {
        this.credential = await this.renew(cred);
        await this.credentialFile.save(this.credential);
        backoff.reset();
        this.log.info('node certificate renewed', { notAfter: this.credential.notAfter.toISOString() });
        this.emit('credential', this.credential);
        this.stream?.cancel(); // reconnect the feed with the new certificate
      } catch (err) {
        const expired = cred.notAfter.getTime() <= Date.now();
        const delay = backoff.next();
        this.log[expired ? 'error' : 'warn'](
          expired ? 'the node certificate expired before it could be renewed; create a new join token and restart the agent' : 'cannot renew the node certificate; retrying',
          { error: errorMessage(err), retryInMs: delay },
        );
        await sleep(delay, this.abort.signal);
      }
    }
  }

  private async renew(cred: NodeCredential): Promise<NodeCredential> {
    const key = generateKeyPair('ec-p256').privateKey;
    const client = new CaClient({ address: this.opts.caAddress, rootCertPem: this.opts.caRootPem, keyPem: cred.keyPem, certChainPem: cred.certChainPem, serverName: this.opts.serverName });
    try {
      const chain = await client.createCertificate(createCsr({ key, uris: [spiffeId(this.node)] }), ttlSeconds(this.opts.nodeCertTtlMs));
      return credentialFromChain(privateKeyToPem(key), chain, this.opts.caRootPem, this.node);
    } finally {
      client.close();
    }
  }

  // --- secret feed ---------------------------------------------------------------------------

  private async feedLoop(): Promise<void> {
    const backoff = new Backoff(this.opts.backoff);
    while (!this.stopped) {
      const cred = this.credential!;
      this.client = new CaClient({ address: this.opts.caAddress, rootCertPem: this.opts.caRootPem, keyPem: cred.keyPem, certChainPem: cred.certChainPem, serverName: this.opts.serverName });
      const outcome = await new Promise<{ error?: Error & { code?: number; details?: string } }>((resolve) => {
        const stream = (this.stream = this.client!.watchSecrets());
        stream.on('data', (u: SecretsUpdate) => {
          backoff.reset();
          this.applying = this.applying.then(() => this.apply(u)).catch((err) => this.log.error('cannot apply secrets', { error: errorMessage(err) }));
        });
        stream.on('error', (error) => resolve({ error }));
        stream.on('end', () => resolve({}));
      });
      this.stream = undefined;
      this.client.close();
      if (this.stopped) return;
      if (outcome.error?.code === grpcStatus.CANCELLED && this.credential !== cred) continue; // renewed: reconnect now
      const delay = backoff.next();
      this.log.warn('secret feed disconnected; keeping the current files and retrying', { error: outcome.error?.details ?? outcome.error?.message ?? 'stream ended', retryInMs: delay });
      await sleep(delay, this.abort.signal);
    }
  }

  /** Applies one feed update to the certs directory; a snapshot also removes what is not in it. */
  private async apply(u: SecretsUpdate): Promise<void> {
    const present = new Set((await this.certs.list()).map((d) => `${d.namespace}/${d.serviceAccount}`));
    await forEachLimited(u.secrets, 8, (s) => this.writeSecret(s, present.has(`${s.namespace}/${s.serviceAccount}`)));
    const wanted = new Set(u.secrets.map((s) => `${s.namespace}/${s.serviceAccount}`));
    const gone = u.snapshot
      ? [...present].filter((k) => !wanted.has(k)).map((k) => ({ namespace: k.slice(0, k.indexOf('/')), serviceAccount: k.slice(k.indexOf('/') + 1) }))
      : u.removed;
    for (const d of gone) {
      await this.certs.remove(d.namespace, d.serviceAccount);
      this.written.delete(`${d.namespace}/${d.serviceAccount}`);
      this.log.info('identity left this node; removed its certificates', { namespace: d.namespace, serviceAccount: d.serviceAccount });
    }
    this.emit('synced', await this.certs.list());
  }

  private async writeSecret(s: WorkloadSecret, present: boolean): Promise<void> {
    const k = `${s.namespace}/${s.serviceAccount}`;
    if (present && this.written.get(k) === s.version) return;
    const problem = this.checkSecret(s);
    if (problem) {
      this.log.error('refusing a secret from the CA; keeping the current files', { namespace: s.namespace, serviceAccount: s.serviceAccount, problem });
      return;
    }
    const bundle: Bundle = { 'cert-chain.pem': s.certChain, 'key.pem': s.key, 'root-cert.pem': s.rootCert };
    // Files left by an earlier run are read once, so that a restart rewrites nothing that is current.
    const current = present && !this.written.has(k) ? await this.certs.read(s.namespace, s.serviceAccount).catch(() => undefined) : undefined;
    const same = current && current['cert-chain.pem'] === bundle['cert-chain.pem'] && current['key.pem'] === bundle['key.pem'] && current['root-cert.pem'] === bundle['root-cert.pem'];
    if (!same) await this.certs.write(s.namespace, s.serviceAccount, bundle, !present);
    this.written.set(k, s.version);
    this.log.debug('wrote certificates', { namespace: s.namespace, serviceAccount: s.serviceAccount, version: s.version });
  }

  /**
   * What is wrong with a delivered secret: it must chain to our root and name its identity. The
   * feed is authenticated (the server's certificate chains to --ca-root), so this guards against
   * a wrong or damaged secret, not forgery.
   */
  private checkSecret(s: WorkloadSecret, now = new Date()): string | undefined {
    try {
      const expected = spiffeId(workloadIdentity(this.node.trustDomain, s.namespace, s.serviceAccount));
      if (!s.certChain.includes('CERTIFICATE') || !s.key.includes('PRIVATE KEY')) return 'the secret has no certificate or no key';
      const check = verifyChain(s.certChain, this.opts.caRootPem, now);
      if (!check.ok || !check.leaf) return check.problems.join('; ');
      const got = spiffeId(identityOfCertificate(check.leaf));
      if (got !== expected) return `the certificate is for ${got}, not ${expected}`;
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }
}

function ttlSeconds(ms: number | undefined): number {
  return ms ? Math.round(ms / 1000) : 0;
}
