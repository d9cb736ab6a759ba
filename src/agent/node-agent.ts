import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { BackoffOptions } from '../common/backoff';
import { errorMessage } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import type { ReadinessCheck } from '../common/monitoring';
import { accountKey, nodeIdentity, NodeIdentity } from '../pki/identity';
import type { KeyAlgorithm } from '../pki/keys';
import { CertsDirectory } from './certs-directory';
import { NodeCredential, NodeCredentials } from './node-credential';
import { NodePlacements, PlacementChange } from './node-placements';
import { SdsServer } from './sds-server';
import { SecretFileWriter } from './secret-file-writer';
import { TrustBundle } from './trust-bundle';
import { WorkloadCertificates } from './workload-certs';
import { XdsProxy } from './xds-proxy';

/** SDS mode's settings (`--sds-dir` and its companions). */
export interface SdsModeOptions {
  sdsDir: string;
  socketName?: string;
  socketMode?: number;
  dirMode?: number;
  dirOwner?: { uid: number; gid?: number };
  /** --secret-ttl (default 24h). */
  secretTtlMs?: number;
  keyAlgorithm?: KeyAlgorithm;
  /** Proxy xDS from `<sds-dir>/<ns>/<sa>/xds` to `citadel server --xds-port` at this address (host:port); none when absent. */
  xdsAddress?: string;
  /** After a root change, each identity's certificate is renewed at a random moment within this (default: a tenth of --secret-ttl, at most 30 s). */
  rootChangeSpreadMs?: number;
}

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
  /** SDS mode: a socket per identity placed on the node. */
  sds?: SdsModeOptions;
  /** Metrics (SDS streams, pushes, NACKs, CSR latency, certificate expiry). */
  registry?: Registry;
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
 * `<certs-dir>`) and SDS mode (the placement feed, keys made here, a socket per identity). While
 * the CA is unreachable what the node has stays as it is.
 *
 * Events: `credential` (node certificate obtained or renewed), `synced` (file mode applied an
 * update; argument: the identities now present). Problems are logged, never emitted.
 */
export class NodeAgent extends EventEmitter {
  readonly certs: CertsDirectory | undefined;
  readonly credentials: NodeCredentials;
  /** The roots of --ca-root, and which one the CA signs under now (learned from its answers). */
  readonly trust: TrustBundle;
  private readonly node: NodeIdentity;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private fileWriter: SecretFileWriter | undefined;
  private placements: NodePlacements | undefined;
  sds: SdsServer | undefined;
  xds: XdsProxy | undefined;
  workloadCerts: WorkloadCertificates | undefined;

  constructor(private readonly opts: NodeAgentOptions) {
    super();
    this.node = nodeIdentity(opts.trustDomain ?? 'cluster.local', opts.host);
    this.log = (opts.logger ?? silentLogger).child({ component: 'agent', host: opts.host });
    if (opts.certsDir) this.certs = new CertsDirectory(opts.certsDir, opts.durable ?? true);
    const stateDir = opts.stateDir ?? path.join(opts.certsDir ?? opts.sds?.sdsDir ?? '.', '.citadel-agent');
    if (!opts.certsDir && !opts.sds) throw new Error('the node agent needs a mode: --certs-dir (files), --sds-dir (SDS), or both');
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
    this.trust = new TrustBundle(opts.caRootPem);
    this.credentials.on('renewed', (c: NodeCredential) => {
      // A node admitted again after the CA changed its root is the first answer under the new one.
      this.trust.observe(c.rootCertPem);
      this.emit('credential', c);
    });
  }

  get nodeCredential(): NodeCredential | undefined {
    return this.credentials.current;
  }

  /** Obtains the node credential (reusing a valid saved one), then starts every mode given. */
  async start(): Promise<void> {
    await this.certs?.repair();
    const credential = await this.credentials.start();
    this.trust.observe(credential.rootCertPem);
    this.emit('credential', credential);
    if (this.certs) {
      this.fileWriter = new SecretFileWriter({
        certs: this.certs,
        credentials: this.credentials,
        trustDomain: this.node.trustDomain,
        trust: this.trust,
        logger: this.log,
        backoff: this.opts.backoff,
        signal: this.abort.signal,
      });
      this.fileWriter.on('synced', (present) => this.emit('synced', present));
      this.fileWriter.start();
    }
    if (this.opts.sds) await this.startSds(this.opts.sds);
  }

  /** SDS mode: the placement feed says which identities are here; each gets a socket and a certificate made here. */
  private async startSds(o: SdsModeOptions): Promise<void> {
    const registry = this.opts.registry;
    const metric = <T>(make: () => T, name: string): T => (registry?.getSingleMetric(name) as T | undefined) ?? make();
    const registers = registry ? [registry] : [];
    this.workloadCerts = new WorkloadCertificates({
      credentials: this.credentials,
      trustDomain: this.node.trustDomain,
      trust: this.trust,
      ttlMs: o.secretTtlMs ?? 24 * 3_600_000,
      rootChangeSpreadMs: o.rootChangeSpreadMs,
      keyAlgorithm: o.keyAlgorithm ?? 'ec-p256',
      logger: this.log,
      backoff: this.opts.backoff,
      metrics: {
        csrSeconds: metric(() => new Histogram({ name: 'citadel_agent_csr_duration_seconds', help: 'Time to have a workload CSR signed by the CA.', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers }), 'citadel_agent_csr_duration_seconds'),
        csrErrors: metric(() => new Counter({ name: 'citadel_agent_csr_errors_total', help: 'Workload CSRs that failed (retried with backoff).', registers }), 'citadel_agent_csr_errors_total'),
        expiry: metric(() => new Gauge({ name: 'citadel_agent_workload_cert_expiry_timestamp_seconds', help: "When each identity's current certificate expires (Unix time).", labelNames: ['spiffe_id'], registers }), 'citadel_agent_workload_cert_expiry_timestamp_seconds'),
      },
    });
    this.sds = new SdsServer({
      sdsDir: o.sdsDir,
      socketName: o.socketName ?? 'socket',
      socketMode: o.socketMode ?? 0o666,
      dirMode: o.dirMode ?? 0o750,
      dirOwner: o.dirOwner,
      trustDomain: this.node.trustDomain,
      certs: this.workloadCerts,
      trust: this.trust,
      logger: this.log,
      metrics: {
        streams: metric(() => new Gauge({ name: 'citadel_agent_sds_streams', help: 'Open SDS streams.', labelNames: ['api'], registers }), 'citadel_agent_sds_streams'),
        pushes: metric(() => new Counter({ name: 'citadel_agent_sds_pushes_total', help: 'SDS responses sent (on streams, and answers to FetchSecrets).', labelNames: ['api'], registers }), 'citadel_agent_sds_pushes_total'),
        nacks: metric(() => new Counter({ name: 'citadel_agent_sds_nacks_total', help: 'Secrets a proxy refused (NACK); the last error is on /debug/sds.', labelNames: ['api'], registers }), 'citadel_agent_sds_nacks_total'),
      },
    });
    if (o.xdsAddress) {
      this.xds = new XdsProxy({ xdsAddress: o.xdsAddress, caRootPem: this.opts.caRootPem, credentials: this.credentials, trustDomain: this.node.trustDomain, socketMode: o.socketMode ?? 0o666, dirOwner: o.dirOwner, logger: this.log });
    }
    this.placements = new NodePlacements({ credentials: this.credentials, logger: this.log, backoff: this.opts.backoff, signal: this.abort.signal });
    let applying = Promise.resolve();
    this.placements.on('change', (c: PlacementChange) => {
      applying = applying.then(() => this.applyPlacements(c)).catch((err) => this.log.error('cannot apply placements', { error: errorMessage(err) }));
    });
    await this.placements.start();
    await applying;
  }

  private async applyPlacements(c: PlacementChange): Promise<void> {
    for (const a of c.removed) {
      await this.xds?.removeIdentity(a);
      await this.sds!.removeIdentity(a);
    }
    for (const a of c.placed) {
      await this.sds!.addIdentity(a);
      await this.xds?.addIdentity(a, path.join(this.opts.sds!.sdsDir, a.namespace, a.serviceAccount));
    }
    this.emit('placements', this.placements!.current().map(accountKey));
  }

  /** /healthz conditions: a valid node certificate, and (SDS mode) every identity's certificate. */
  readiness(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [
      { name: 'node-credential', check: () => (this.credentials.current && this.credentials.current.notAfter.getTime() > Date.now() ? undefined : 'no valid node certificate') },
    ];
    if (this.opts.sds) {
      checks.push({
        name: 'sds',
        check: () => {
          const missing = (this.sds?.identities() ?? []).filter((i) => !this.workloadCerts?.current(i.account)).map((i) => i.spiffeId);
          return missing.length ? `no valid certificate yet for ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}` : undefined;
        },
      });
    }
    return checks;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.xds?.close();
    await this.sds?.close();
    await this.workloadCerts?.close();
    await this.placements?.stopped();
    await this.credentials.stop();
    await this.fileWriter?.stopped();
  }
}
