import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import type { BackoffOptions } from '../common/backoff';
import { Logger, silentLogger } from '../common/log';
import { nodeIdentity, NodeIdentity } from '../pki/identity';
import { CertsDirectory } from './certs-directory';
import { NodeCredential, NodeCredentials } from './node-credential';
import { SecretFileWriter } from './secret-file-writer';

export interface NodeAgentOptions {
  /** host:port of the CA's gRPC API (8060). */
  caAddress: string;
  /** The Citadel root (PEM) that the server and every delivered certificate must chain to. */
  caRootPem: string;
  /** One-time join token; needed only when there is no valid node certificate in the state directory. */
  joinToken?: string;
  /** This Mesos agent's hostname, as Marathon reports it for tasks. */
  host: string;
  trustDomain?: string;
  /** File mode: where the identity directories go. */
  certsDir?: string;
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

/**
 * The node agent on a Mesos agent, in parts: the node credential (attest once, renew with
 * itself), and the modes it is given, side by side: file mode (the CA's secret feed written to
 * `<certs-dir>`). While the CA is unreachable what the node has stays as it is.
 *
 * Events: `credential` (node certificate obtained or renewed), `synced` (file mode applied an
 * update; argument: the identities now present). Problems are logged, never emitted.
 */
export class NodeAgent extends EventEmitter {
  readonly certs: CertsDirectory | undefined;
  readonly credentials: NodeCredentials;
  private readonly node: NodeIdentity;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private fileWriter: SecretFileWriter | undefined;

  constructor(private readonly opts: NodeAgentOptions) {
    super();
    this.node = nodeIdentity(opts.trustDomain ?? 'cluster.local', opts.host);
    this.log = (opts.logger ?? silentLogger).child({ component: 'agent', host: opts.host });
    if (opts.certsDir) this.certs = new CertsDirectory(opts.certsDir, opts.durable ?? true);
    const stateDir = opts.stateDir ?? (opts.certsDir ? path.join(opts.certsDir, '.citadel-agent') : undefined);
    if (!stateDir) throw new Error('the node agent needs --state-dir (or --certs-dir, which holds it by default)');
    this.credentials = new NodeCredentials({
      node: this.node,
      ca: { address: opts.caAddress, rootCertPem: opts.caRootPem, serverName: opts.serverName },
      stateDir,
      joinToken: opts.joinToken,
      ttlMs: opts.nodeCertTtlMs,
      backoff: opts.backoff,
      logger: this.log,
      signal: this.abort.signal,
    });
    this.credentials.on('renewed', (c: NodeCredential) => this.emit('credential', c));
  }

  get nodeCredential(): NodeCredential | undefined {
    return this.credentials.current;
  }

  /** Obtains the node credential (reusing a valid saved one), then starts every mode given. */
  async start(): Promise<void> {
    await this.certs?.repair();
    const credential = await this.credentials.start();
    this.emit('credential', credential);
    if (this.certs) {
      this.fileWriter = new SecretFileWriter({
        certs: this.certs,
        credentials: this.credentials,
        trustDomain: this.node.trustDomain,
        caRootPem: this.opts.caRootPem,
        logger: this.log,
        backoff: this.opts.backoff,
        signal: this.abort.signal,
      });
      this.fileWriter.on('synced', (present) => this.emit('synced', present));
      this.fileWriter.start();
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.credentials.stop();
    await this.fileWriter?.stopped();
  }
}
