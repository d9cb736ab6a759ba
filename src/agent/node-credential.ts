/**
 * The node's own key and certificate (spiffe://<td>/mesos-agent/<host>): obtained once with a
 * one-time join token, saved in the state directory, reused across restarts while valid, and
 * renewed with itself at half its lifetime.
 */
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { writeFileAtomic } from '../common/atomic-file';
import { Backoff, BackoffOptions, sleep } from '../common/backoff';
import { errorMessage, UserError } from '../common/errors';
import type { Logger } from '../common/log';
import { checkBundle } from '../pki/bundle';
import { createCsr } from '../pki/csr';
import { NodeIdentity, spiffeId } from '../pki/identity';
import { generateKeyPair, privateKeyToPem } from '../pki/keys';
import { parsePemBlocks, splitCertificates, toPem } from '../pki/pem';
import { verifyChain } from '../pki/verify';
import { CaClient, CaClientOptions, explainUntrustedCa } from './ca-client';
import { caRefusal } from './ca-refusal';
import { Rotator } from './rotator';

export interface NodeCredential {
  keyPem: string;
  /** Leaf, then intermediates (not the root). */
  certChainPem: string;
  /** The root of --ca-root the chain leads to: the one the CA signed it under. */
  rootCertPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** Builds a credential from the CA's answer (leaf first, root last), checked against our root and identity. */
export function credentialFromChain(keyPem: string, chain: string[], rootPem: string, expected: NodeIdentity, now = new Date()): NodeCredential {
  const roots = splitCertificates(rootPem);
  const certChainPem = chain.flatMap((c) => splitCertificates(c)).filter((c) => !roots.includes(c)).join('');
  return checkCredential(keyPem, certChainPem, rootPem, expected, now);
}

export function checkCredential(keyPem: string, certChainPem: string, rootPem: string, expected: NodeIdentity, now = new Date()): NodeCredential {
  const check = checkBundle({ certChainPem, keyPem }, { trustedRootPem: rootPem, expected, now, keyLabel: 'the node key' });
  if (!check.ok || !check.leaf) throw new Error(`the node certificate does not verify against --ca-root: ${check.problems.join('; ')}`);
  // --ca-root may hold several roots (a root rotation): which one this chain leads to.
  const roots = splitCertificates(rootPem);
  const root = roots.length === 1 ? roots[0] : roots.find((r) => verifyChain(certChainPem, r, now).problems.length === 0)!;
  return { keyPem, certChainPem, rootCertPem: root, notBefore: check.leaf.notBefore, notAfter: check.leaf.notAfter };
}

/** `<state-dir>/node.pem`: key and chain in one file, replaced by rename so they never disagree. */
export class NodeCredentialFile {
  readonly file: string;
  constructor(readonly dir: string) {
    this.file = path.join(dir, 'node.pem');
  }

  /** The saved credential if it is still valid for `expected` under `rootPem`; otherwise why not. */
  async load(rootPem: string, expected: NodeIdentity): Promise<{ credential?: NodeCredential; problem?: string }> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
    try {
      const blocks = parsePemBlocks(text);
      const key = blocks.find((b) => b.label.endsWith('PRIVATE KEY'));
      if (!key) throw new Error('no private key in it');
      const chain = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => toPem('CERTIFICATE', b.der)).join('');
      return { credential: checkCredential(toPem(key.label, key.der), chain, rootPem, expected) };
    } catch (err) {
      return { problem: `${this.file}: ${(err as Error).message}` };
    }
  }

  async save(c: NodeCredential): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, c.keyPem + c.certChainPem, 0o600);
  }
}

export interface NodeCredentialsOptions {
  node: NodeIdentity;
  /** How to reach the CA (address, --ca-root, server name); the credential is added per call. */
  ca: Omit<CaClientOptions, 'keyPem' | 'certChainPem'>;
  stateDir: string;
  /** Needed only when there is no valid saved credential. */
  joinToken?: string;
  /** Lifetime asked for (0: the CA's default). */
  ttlMs?: number;
  backoff?: BackoffOptions;
  logger: Logger;
  signal: AbortSignal;
}

/** Refusals that retrying cannot change: a spent or wrong token, a refused CSR. */
const RETRYABLE = new Set([grpcStatus.UNAVAILABLE, grpcStatus.DEADLINE_EXCEEDED, grpcStatus.RESOURCE_EXHAUSTED, grpcStatus.INTERNAL, grpcStatus.UNKNOWN, grpcStatus.CANCELLED]);

/**
 * The node credential's whole life: `start()` reuses the saved one or attests with the join token
 * (retrying while the CA is unreachable), then a Rotator renews it. Emits `renewed` with each new
 * credential. `client()` makes a CA client that presents the current one.
 */
export class NodeCredentials extends EventEmitter {
  private readonly file: NodeCredentialFile;
  private rotator: Rotator<NodeCredential> | undefined;
  /** The join token was used (spent, or refused) in this process: a refused node does not try it twice. */
  private tokenTried = false;
  private toldToReadmit = false;
  private readmitting: Promise<void> | undefined;
  private shared: { credential: NodeCredential; client: CaClient } | undefined;

  /** Why a call to the CA failed, cause first, when its certificate is not one --ca-root trusts (else undefined). */
  explainFailure(err: unknown): Promise<string | undefined> {
    return explainUntrustedCa(err, this.opts.ca);
  }

  constructor(private readonly opts: NodeCredentialsOptions) {
    super();
    this.file = new NodeCredentialFile(opts.stateDir);
  }

  get current(): NodeCredential | undefined {
    return this.rotator?.current;
  }

  async start(): Promise<NodeCredential> {
    const credential = await this.obtain();
    this.rotator = new Rotator(credential, {
      what: 'node certificate',
      renew: (c) => this.renew(c),
      onRotated: (next) => {
        this.opts.logger.info('node certificate renewed', { notAfter: next.notAfter.toISOString() });
        this.emit('renewed', next);
      },
      onFailure: (err, expired) => {
        const refusal = caRefusal(err);
        if (refusal) this.refused(refusal);
        else if (expired) this.opts.logger.error('the node certificate expired before it could be renewed; create a new join token and restart the agent', {});
      },
      askedLifetimeMs: this.opts.ttlMs,
      refusal: caRefusal,
      backoff: this.opts.backoff,
      logger: this.opts.logger,
    });
    return credential;
  }

  async stop(): Promise<void> {
    await this.rotator?.stop();
    await this.readmitting;
    this.shared?.client.close();
    this.shared = undefined;
  }

  /**
   * The CA refuses the node certificate (the node was evicted, or the CA no longer knows it). A
   * join token the agent was given and has not tried since then may be a new one, given to
   * re-admit the node: attest with it once; otherwise say what a person has to do.
   */
  refused(reason: string): void {
    if (this.readmitting) return;
    const host = this.opts.node.host;
    const advice = `create a join token (citadel token create --host ${host}) and restart the agent with it`;
    if (!this.opts.joinToken || this.tokenTried) {
      if (!this.toldToReadmit) this.opts.logger.error(`this node is refused by the CA; to admit it again ${advice}`, { refusal: reason });
      this.toldToReadmit = true;
      return;
    }
    this.tokenTried = true;
    this.readmitting = (async () => {
      try {
        const credential = await this.attestOnce();
        this.rotator?.replace(credential);
        this.toldToReadmit = false;
        this.opts.logger.info('node admitted again with the join token', { notAfter: credential.notAfter.toISOString() });
        this.emit('renewed', credential);
      } catch (err) {
        this.toldToReadmit = true;
        this.opts.logger.error(`this node is refused by the CA and its join token does not admit it again; ${advice}`, { refusal: reason, token: caRefusal(err) ?? errorMessage(err) });
      } finally {
        this.readmitting = undefined;
      }
    })();
  }

  /**
   * One long-lived CA client presenting the current credential, for many small calls (the SDS
   * mode's CSRs: one connection, not a TLS handshake each). Replaced when the credential is
   * renewed; the old one is closed a little later so calls under way finish.
   */
  sharedClient(): CaClient {
    const c = this.current;
    if (!c) throw new Error('the node credential is not obtained yet');
    if (this.shared?.credential !== c) {
      const old = this.shared?.client;
      if (old) setTimeout(() => old.close(), 30_000).unref();
      this.shared = { credential: c, client: new CaClient({ ...this.opts.ca, keyPem: c.keyPem, certChainPem: c.certChainPem }) };
    }
    return this.shared.client;
  }

  /** A CA client presenting the current node credential (close it when done). */
  client(): CaClient {
    const c = this.current;
    if (!c) throw new Error('the node credential is not obtained yet');
    return new CaClient({ ...this.opts.ca, keyPem: c.keyPem, certChainPem: c.certChainPem });
  }

  private csr(): { csr: string; keyPem: string } {
    const key = generateKeyPair('ec-p256').privateKey;
    return { csr: createCsr({ key, uris: [spiffeId(this.opts.node)] }), keyPem: privateKeyToPem(key) };
  }

  private get ttlSeconds(): number {
    return this.opts.ttlMs ? Math.round(this.opts.ttlMs / 1000) : 0;
  }

  private async obtain(): Promise<NodeCredential> {
    const saved = await this.file.load(this.opts.ca.rootCertPem, this.opts.node);
    if (saved.credential) {
      this.opts.logger.info('reusing the saved node certificate', { notAfter: saved.credential.notAfter.toISOString() });
      return saved.credential;
    }
    if (saved.problem) this.opts.logger.warn('the saved node certificate cannot be used', { problem: saved.problem });
    if (!this.opts.joinToken) {
      throw new UserError(`no valid node certificate in ${this.file.dir} and no --join-token; create one with \`citadel token create --host ${this.opts.node.host}\``);
    }
    const backoff = new Backoff(this.opts.backoff);
    for (;;) {
      try {
        return await this.attestOnce();
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== undefined && !RETRYABLE.has(code)) throw new UserError(`node attestation refused: ${(err as { details?: string }).details ?? errorMessage(err)}`);
        // A wrong --ca-root never heals by retrying: say so, cause first, and stop.
        const untrusted = await explainUntrustedCa(err, this.opts.ca);
        if (untrusted) throw new UserError(untrusted);
        const delay = backoff.next();
        this.opts.logger.warn('cannot reach the CA to attest; retrying', { error: errorMessage(err), retryInMs: delay });
        if (this.opts.signal.aborted) throw new Error('stopped');
        await sleep(delay, this.opts.signal);
        if (this.opts.signal.aborted) throw new Error('stopped');
      }
    }
  }

  /** One attestation with the join token: a new key, the CA's node certificate for it, saved. */
  private async attestOnce(): Promise<NodeCredential> {
    const { csr, keyPem } = this.csr();
    const client = new CaClient(this.opts.ca);
    try {
      const chain = await client.attestNode(this.opts.joinToken!, this.opts.node.host, csr, this.ttlSeconds);
      const credential = credentialFromChain(keyPem, chain, this.opts.ca.rootCertPem, this.opts.node);
      this.tokenTried = true; // spent
      await this.file.save(credential);
      this.opts.logger.info('node attested', { identity: spiffeId(this.opts.node), notAfter: credential.notAfter.toISOString() });
      return credential;
    } finally {
      client.close();
    }
  }

  private async renew(current: NodeCredential): Promise<NodeCredential> {
    const { csr, keyPem } = this.csr();
    const client = new CaClient({ ...this.opts.ca, keyPem: current.keyPem, certChainPem: current.certChainPem });
    try {
      const chain = await client.createCertificate(csr, this.ttlSeconds);
      const next = credentialFromChain(keyPem, chain, this.opts.ca.rootCertPem, this.opts.node);
      await this.file.save(next);
      return next;
    } finally {
      client.close();
    }
  }
}
