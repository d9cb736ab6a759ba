/**
 * Several `citadel server` replicas on one real ZooKeeper and one Marathon simulator process:
 * what the HA scenarios start, deploy into, look at and tear down.
 */
import { CaClient } from '../../src/agent/ca-client';
import { CertificateAuthority } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { createCsr } from '../../src/pki/csr';
import { secretName, spiffeId, workloadIdentity } from '../../src/pki/identity';
import { generateKeyPair, privateKeyFromPem } from '../../src/pki/keys';
import { identityOfCertificate, keyMatchesCertificate, verifyChain } from '../../src/pki/verify';
import type { StoredSecret } from '../../src/store/store';
import { openZkStore, ZkStore } from '../../src/store/zk/zk-store';
import { CitadelServerProcess, LogLine, startCitadelServer } from '../helpers/citadel-server';
import { MarathonSimProcess, startMarathonSimProcess } from '../helpers/marathon-sim';
import { startZooKeeper, ZooKeeperServer } from '../helpers/zookeeper';

export const TD = 'cluster.local';

export interface Replica extends CitadelServerProcess {
  name: string;
}

export interface HaClusterOptions {
  replicas: number;
  /** ZooKeeper session timeout of the replicas (the store URL's ?sessionTimeout=). */
  sessionTimeout?: string;
  resyncInterval?: string;
}

/** A (namespace, service account) pair and the app id that names it. */
export interface AppSpec {
  id: string;
  namespace: string;
  serviceAccount: string;
}

export class HaCluster {
  readonly replicas: Replica[] = [];
  private inspector?: ZkStore;
  private signer?: CertificateAuthority;

  private constructor(
    readonly zk: ZooKeeperServer,
    readonly marathon: MarathonSimProcess,
    readonly storeUrl: string,
    private readonly opts: HaClusterOptions,
  ) {}

  /** ZooKeeper, the simulator, then the replicas one after another (the first creates the root). */
  static async start(opts: HaClusterOptions): Promise<HaCluster> {
    const zk = await startZooKeeper();
    let marathon: MarathonSimProcess | undefined;
    try {
      marathon = await startMarathonSimProcess(['--agents', 'agent-1,agent-2', '--heartbeat-interval', '1s']);
      const cluster = new HaCluster(zk, marathon, `${zk.url('/citadel')}?sessionTimeout=${opts.sessionTimeout ?? '4s'}`, opts);
      try {
        for (let i = 0; i < opts.replicas; i++) await cluster.startReplica(`r${i + 1}`);
      } catch (err) {
        await cluster.close();
        throw err;
      }
      return cluster;
    } catch (err) {
      await marathon?.stop();
      await zk.destroy();
      throw err;
    }
  }

  async startReplica(name: string): Promise<Replica> {
    const p = await startCitadelServer(
      [
        '--store', this.storeUrl,
        '--marathon', this.marathon.url,
        '--resync-interval', this.opts.resyncInterval ?? '2s',
        '--secret-delete-delay', '1h',
      ],
      { timeoutMs: 60_000 },
    );
    const replica: Replica = Object.assign(p, { name });
    this.replicas.push(replica);
    return replica;
  }

  /** Stops every process (SIGKILL for replicas that do not stop in time) and removes ZooKeeper's data. */
  async close(): Promise<void> {
    await this.inspector?.close().catch(() => undefined);
    this.inspector = undefined;
    await Promise.all(
      this.replicas.map(async (r) => {
        const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
        await r.stop('SIGTERM');
        clearTimeout(timer);
      }),
    );
    await this.marathon.stop();
    await this.zk.destroy();
  }

  alive(): Replica[] {
    return this.replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null);
  }

  /** The test's own view of the store (another ZooKeeper client; it never writes secrets). */
  async store(): Promise<ZkStore> {
    this.inspector ??= await openZkStore(this.storeUrl, { sessionTimeoutMs: 20_000 });
    return this.inspector;
  }

  async rootCertPem(): Promise<string> {
    const ca = await (await this.store()).getCaSecret();
    if (!ca) throw new Error('no CA secret in ZooKeeper');
    return ca.caCertPem;
  }

  /** Deploys an app on the simulator (POST /v2/apps) naming the account by label. */
  async deploy(app: AppSpec): Promise<void> {
    const res = await fetch(`${this.marathon.url}/v2/apps`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: app.id, cmd: 'sleep 1000', instances: 1, labels: { 'istio.io/service-account': app.serviceAccount } }),
    });
    if (res.status !== 201) throw new Error(`deploying ${app.id}: HTTP ${res.status} ${await res.text()}`);
  }

  /** A client of one replica's gRPC CA that authenticates as the workload (ns, sa). */
  async workloadClient(replica: Replica, ns: string, sa: string): Promise<CaClient> {
    if (!this.signer) this.signer = await CertificateAuthority.open(await this.store(), DEFAULT_CA_CONFIG);
    const cred = this.signer.issueKeyCertBundle(workloadIdentity(TD, ns, sa), 3600_000);
    return new CaClient({ address: `127.0.0.1:${replica.grpcPort}`, rootCertPem: this.signer.rootCertPem, keyPem: cred.keyPem, certChainPem: cred.certChainPem });
  }
}

/** A CreateCertificate for the workload's own identity; throws unless the chain is valid and for it. */
export async function createCertificateFor(client: CaClient, ns: string, sa: string, rootPem: string, deadlineMs = 10_000): Promise<string> {
  const id = spiffeId(workloadIdentity(TD, ns, sa));
  const csr = createCsr({ key: generateKeyPair('ec-p256').privateKey, uris: [id] });
  const chain = await client.createCertificate(csr, 3600, deadlineMs);
  if (chain[chain.length - 1] !== rootPem) throw new Error('CreateCertificate: the chain does not end with the CA root');
  const check = verifyChain(chain[0], rootPem);
  if (!check.ok || !check.leaf) throw new Error(`CreateCertificate: ${check.problems.join('; ')}`);
  const got = spiffeId(identityOfCertificate(check.leaf));
  if (got !== id) throw new Error(`CreateCertificate: issued for ${got}, asked for ${id}`);
  return chain[0];
}

/** What is wrong with a stored secret: [] when its chain verifies to the root, names the account and matches its key. */
export function secretProblems(s: StoredSecret, rootPem: string): string[] {
  const where = `${s.namespace}/${s.name}`;
  const problems: string[] = [];
  if (s.rootCertPem !== rootPem) problems.push(`${where}: root-cert.pem is not the CA root`);
  const check = verifyChain(s.certChainPem, rootPem);
  if (!check.ok || !check.leaf) return [...problems, `${where}: ${check.problems.join('; ')}`];
  const sa = s.metadata.serviceAccount;
  const id = spiffeId(identityOfCertificate(check.leaf));
  if (id !== `spiffe://${TD}/ns/${s.namespace}/sa/${sa}` || s.name !== secretName(sa)) problems.push(`${where}: certificate is for ${id}`);
  if (!keyMatchesCertificate(privateKeyFromPem(s.keyPem), check.leaf)) problems.push(`${where}: key does not match the certificate`);
  return problems;
}

/** The secrets expected for a set of apps: `istio.default` plus `istio.<sa>` in every namespace used. */
export function expectedSecrets(apps: AppSpec[]): string[] {
  const out = new Set<string>();
  for (const a of apps) {
    out.add(`${a.namespace}/istio.default`);
    out.add(`${a.namespace}/${secretName(a.serviceAccount)}`);
  }
  return [...out].sort();
}

export const isCreatedSecret = (l: LogLine) => l.msg === 'created secret';
export const isElected = (l: LogLine) => /^elected leader/.test(l.msg);

/** Whether the replica's log says it leads now: its last leadership line. */
export function leadsPerLog(r: Replica): boolean {
  const last = r.logs().filter((l) => isElected(l) || /^not the leader/.test(l.msg)).pop();
  return last !== undefined && isElected(last);
}

/** `ns/name` of every secret the replica logged as created. */
export function createdByLog(r: Replica): string[] {
  return r.logs().filter(isCreatedSecret).map((l) => `${l.namespace}/${l.secret}`);
}

/** A batch of apps `/<ns>/<app>` with their own accounts, in fresh namespaces named by prefix. */
export function appsIn(prefix: string, count: number): AppSpec[] {
  return Array.from({ length: count }, (_, i) => ({ id: `/${prefix}-${i}/app`, namespace: `${prefix}-${i}`, serviceAccount: `sa-${i}` }));
}
