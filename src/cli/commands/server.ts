import { Command, Option } from 'commander';
import { Gauge } from 'prom-client';
import { parseCertificatePem } from '../../pki/certificate';
import { CertificateAuthority, rootFields } from '../../ca/authority';
import { checkGracePeriodRatio, checkMinGracePeriod, DEFAULT_ROTATION_POLICY } from '../../ca/rotation';
import { parseDuration } from '../../common/duration';
import { UserError, errorMessage } from '../../common/errors';
import { Logger, tappedLogger } from '../../common/log';
import { SecretController } from '../../controller/secret-controller';
import { MarathonClient } from '../../marathon/client';
import { addMarathonOptions, MarathonFlagValues, marathonClientOptionsFromFlags } from '../../marathon/flags';
import { AuditLog } from '../../ca/audit-log';
import { DEFAULT_MAX_CONCURRENT_STREAMS, startCaGrpcServer } from '../../server/grpc-server';
import { DEFAULT_RATE_LIMIT } from '../../server/rate-limit';
import { newRegistry, startMonitoring } from '../../common/monitoring';
import { PACKAGE_VERSION } from '../../common/package-root';
import { MeshServices } from '../../mesh/services';
import { checkNamespace } from '../../pki/identity';
import { StoredPolicies } from '../../server/policy-source';
import { ServerCertificate } from '../../server/server-certificate';
import { ProxyStatus, XdsServer } from '../../server/xds-server';
import * as os from 'node:os';
import { addCaOptions, addLogOptions, addStoreOption, caConfigFromFlags, CaFlagValues, loggerFromFlags, openStoreFromFlags } from '../options';
import type { RegisterCommand } from './index';

interface ServerFlags extends CaFlagValues, MarathonFlagValues {
  store: string;
  kekFile?: string;
  logFormat: string;
  logLevel: string;
  workloadCertGracePeriodRatio: string;
  workloadCertMinGracePeriod: string;
  secretDeleteDelay: string;
  resyncInterval: string;
  monitoringPort: string;
  grpcPort: string;
  grpcHostIdentities?: string;
  grpc: boolean;
  xdsPort: string;
  xds: boolean;
  rootNamespace: string;
  /** Commander's defaults; optional for callers in code (the demo). */
  csrRateLimit?: string;
  csrBurst?: string;
  maxConcurrentStreams?: string;
  auditLog?: string;
  zkAuthFile?: string;
}

export const registerServer: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('server')
    .description('run the CA and control plane: the secret controller watching Marathon, the gRPC API (port 8060), xDS (port 15012) and monitoring (port 15014)');
  addLogOptions(addMarathonOptions(addCaOptions(addStoreOption(cmd))))
    .option('--workload-cert-grace-period-ratio <ratio>', 'refresh a secret when less than this share of its lifetime is left', '0.5')
    .option('--workload-cert-min-grace-period <duration>', '...or less than this, whichever is longer', '10m')
    .option('--secret-delete-delay <duration>', 'delete the secret of a gone service account after this long', '1m')
    .option('--resync-interval <duration>', 'full re-check of every secret against the store', '1m')
    .option('--monitoring-port <port>', '/metrics, /healthz (ready), /livez (alive), /version, /debug/status (citadel status), /debug/syncz (citadel proxy-status)', '15014')
    .option('--grpc-port <port>', 'the CA gRPC API (IstioCertificateService, IstioCAService, node attestation and feed)', '8060')
    .option('--grpc-host-identities <names>', 'extra comma-separated DNS names or IPs in the gRPC server certificate')
    .option('--csr-rate-limit <n>', 'requests per second each caller may make (token bucket per caller identity; per peer address for AttestNode); 0 turns the limit off', String(DEFAULT_RATE_LIMIT.ratePerSecond))
    .option('--csr-burst <n>', 'requests a caller may make at once after being idle (the bucket size)', String(DEFAULT_RATE_LIMIT.burst))
    .option('--max-concurrent-streams <n>', 'HTTP/2 streams a gRPC connection (CA and xDS ports) may have open at once (advertised in SETTINGS; more are refused)', String(DEFAULT_MAX_CONCURRENT_STREAMS))
    .option('--audit-log <file>', 'append one JSON line per certificate issued and per refusal to this file (fsynced in batches; read it with `citadel audit`)')
    .addOption(new Option('--no-grpc', 'run without the gRPC API (controller only)'))
    .option('--xds-port <port>', 'the xDS control plane (ADS, CDS/EDS/LDS/RDS over mTLS), as istiod', '15012')
    .addOption(new Option('--no-xds', 'run without the xDS control plane'))
    .option('--root-namespace <ns>', "the mesh-wide policy namespace (PeerAuthentication without selector there applies to the whole mesh)", 'istio-system')
    .action(async (o: ServerFlags) => {
      const logger = loggerFromFlags(o);
      // Listen for the signals first: one that arrives while starting stops the server once it is
      // up, or, if starting takes longer (Marathon unreachable, say), at once after a few seconds.
      let started = false;
      let giveUp: NodeJS.Timeout | undefined;
      const stopped = new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info('stopping', { signal });
          resolve();
          if (!started) giveUp = setTimeout(() => process.exit(1), 3000).unref();
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
      const handle = await startServer(o, logger);
      started = true;
      clearTimeout(giveUp);
      await stopped;
      await handle.close();
    });
};

export interface RunningServer {
  /** the CA gRPC port (0 with --no-grpc) */
  grpcPort: number;
  /** the xDS port (0 with --no-xds) */
  xdsPort: number;
  /** the root every identity chains to */
  caRootPem: string;
  close(): Promise<void>;
}

/** Wires store, election, CA, Marathon, controller, gRPC, xDS and monitoring together. */
export async function startServer(o: ServerFlags, baseLogger: Logger): Promise<RunningServer> {
  // The last warnings and errors, for `citadel status`.
  const recent: Array<{ time: string; level: string; msg: string; fields: Record<string, unknown> }> = [];
  const logger = tappedLogger(baseLogger, (level, msg, fields) => {
    recent.push({ time: new Date().toISOString(), level, msg, fields });
    if (recent.length > 20) recent.shift();
  });
  const config = caConfigFromFlags(o);
  const ratio = Number(o.workloadCertGracePeriodRatio);
  const ratioCheck = checkGracePeriodRatio(ratio);
  if (ratioCheck.fatal) throw new UserError(ratioCheck.fatal);
  if (ratioCheck.warning) logger.warn(ratioCheck.warning);
  const rotation = { ...DEFAULT_ROTATION_POLICY, gracePeriodRatio: ratio, minGracePeriodMs: parseDuration(o.workloadCertMinGracePeriod, '--workload-cert-min-grace-period'), clockSkewMs: config.clockSkewMs };
  const graceCheck = checkMinGracePeriod(rotation.minGracePeriodMs, config.workloadCertTtlMs);
  if (graceCheck) throw new UserError(graceCheck);
  const deleteDelayMs = parseDuration(o.secretDeleteDelay, '--secret-delete-delay');
  const resyncIntervalMs = parseDuration(o.resyncInterval, '--resync-interval');
  const marathonOptions = marathonClientOptionsFromFlags(o);
  const monitoringPort = port(o.monitoringPort, '--monitoring-port');
  const grpcPort = port(o.grpcPort, '--grpc-port');
  const xdsPort = port(o.xdsPort, '--xds-port');
  const rootNamespaceProblem = checkNamespace(o.rootNamespace);
  if (rootNamespaceProblem) throw new UserError(`--root-namespace: ${rootNamespaceProblem}`);
  const hostIdentities = o.grpcHostIdentities?.split(',').map((s) => s.trim()).filter(Boolean) ?? [];
  const rateLimit = {
    ratePerSecond: count(o.csrRateLimit ?? String(DEFAULT_RATE_LIMIT.ratePerSecond), '--csr-rate-limit', 0),
    burst: count(o.csrBurst ?? String(DEFAULT_RATE_LIMIT.burst), '--csr-burst', 1),
  };
  const maxConcurrentStreams = count(o.maxConcurrentStreams ?? String(DEFAULT_MAX_CONCURRENT_STREAMS), '--max-concurrent-streams', 1);

  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch((err) => logger.warn('error while stopping', { error: errorMessage(err) }));
  };
  try {
    const audit = o.auditLog ? AuditLog.open(o.auditLog, logger) : undefined;
    if (audit) closers.push(() => audit.close());
    const store = await openStoreFromFlags(o, logger, { exclusive: true });
    closers.push(() => store.close());
    const election = await store.leaderElection();
    closers.push(() => election.close());
    const ca = await CertificateAuthority.open(store, config, logger);
    logger.info('CA ready', { selfSigned: ca.selfSigned, trustDomain: ca.trustDomain, store: store.url, ...rootFields(ca.rootCertPem) });

    const registry = newRegistry();
    const monitoring = await startMonitoring({ port: monitoringPort, registry, version: PACKAGE_VERSION, logger });
    closers.push(() => monitoring.close());
    monitoring.addReadinessCheck({ name: 'ca', check: () => (ca.rootCertPem ? undefined : 'no CA root') });
    monitoring.addReadinessCheck({ name: 'store', check: () => store.unavailableReason() });

    const marathon = new MarathonClient({ ...marathonOptions, logger: logger.child({ component: 'marathon' }), registry });
    closers.push(() => marathon.stop());
    const controller = new SecretController({
      ca,
      store,
      accounts: marathon.view,
      rotation,
      deleteDelayMs,
      resyncIntervalMs,
      isLeader: () => election.isLeader(),
      logger: logger.child({ component: 'controller' }),
      registry,
      audit,
    });
    closers.push(() => controller.stop());
    const leaderGauge = new Gauge({ name: 'citadel_server_leader', help: '1 while this replica is the elected leader (writes secrets), else 0; exactly one replica should be 1.', registers: [registry] });
    const rootExpiry = new Gauge({ name: 'citadel_ca_root_expiry_timestamp_seconds', help: "When the CA's root certificate expires (Unix time).", registers: [registry] });
    rootExpiry.set(parseCertificatePem(ca.rootCertPem).notAfter.getTime() / 1000);
    leaderGauge.set(election.isLeader() ? 1 : 0);
    election.onChange((leader) => leaderGauge.set(leader ? 1 : 0));
    const announce = (leader: boolean) => logger.info(leader ? 'elected leader: this replica writes secrets' : 'not the leader: signing only', {});
    election.onChange((leader) => {
      announce(leader);
      // A new leader's cache is a follower's: re-read the store before writing anything.
      if (leader) controller.resync();
    });
    // The first election ran inside leaderElection(), before anyone listened: say how it came out.
    announce(election.isLeader());
    // After the store comes back, catch up on everything the controller could not write.
    const unsubscribeAvailable = store.onAvailable(() => controller.trigger());
    closers.push(async () => unsubscribeAvailable());

    let serverCertificate: ServerCertificate | undefined;
    let grpcPortBound = 0;
    let xdsPortBound = 0;
    if (o.grpc) {
      const grpcServer = await startCaGrpcServer({
        ca,
        store,
        placements: marathon.view,
        port: grpcPort,
        hostIdentities,
        logger: logger.child({ component: 'grpc' }),
        registry,
        monitoring,
        rateLimit,
        maxConcurrentStreams,
        audit,
      });
      closers.push(() => grpcServer.close());
      grpcPortBound = grpcServer.port;
      serverCertificate = grpcServer.serverCertificate;
    }

    let xdsStatus: (() => ProxyStatus[]) | undefined;
    if (o.xds) {
      const mesh = new MeshServices(marathon.view, { logger: logger.child({ component: 'mesh' }), registry });
      closers.push(async () => mesh.close());
      const policies = new StoredPolicies(store, logger.child({ component: 'policy' }));
      await policies.start();
      closers.push(async () => policies.stop());
      const xdsCertificate = serverCertificate ?? new ServerCertificate(ca, hostIdentities, logger.child({ component: 'xds' }));
      if (!serverCertificate) closers.push(async () => xdsCertificate.stop());
      const xds = new XdsServer({
        trustDomain: ca.trustDomain,
        rootNamespace: o.rootNamespace,
        serverCertificate: xdsCertificate,
        placements: marathon.view,
        mesh: { current: () => mesh.snapshot, onChange: (l) => mesh.onSnapshot(() => l()) },
        policies,
        port: xdsPort,
        logger: logger.child({ component: 'xds' }),
        registry,
        monitoring,
        maxConcurrentStreams,
      });
      xdsPortBound = await xds.start();
      closers.push(() => xds.close());
      xdsStatus = () => xds.status();
    }

    monitoring.addJsonRoute('/debug/status', async () => {
      const root = rootFields(ca.rootCertPem);
      const gauge = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;
      const soonest = controller.soonestExpiry();
      const proxies = xdsStatus?.() ?? [];
      return {
        version: PACKAGE_VERSION,
        replica: `${os.hostname()}:${process.pid}`,
        trustDomain: ca.trustDomain,
        root: { ...root, selfSigned: ca.selfSigned },
        leader: election.isLeader(),
        store: { url: store.url, unavailable: store.unavailableReason() ?? null },
        marathon: { url: marathon.currentUrl ?? null, connected: marathon.connected },
        secrets: controller.snapshot().length,
        identities: [...marathon.view.desiredAccounts().values()].reduce((n, sas) => n + sas.size, 0),
        soonestExpiry: soonest ? new Date(soonest).toISOString() : null,
        connectedNodes: await gauge('citadel_server_connected_nodes'),
        proxies: { connected: proxies.length, notSynced: proxies.filter((p) => Object.values(p.types).some((t) => t.status !== 'SYNCED' && t.status !== 'NOT SENT')).length },
        recentErrors: recent.slice().reverse(),
      };
    });

    monitoring.addReadinessCheck({ name: 'marathon', check: () => (marathon.connected ? undefined : 'not connected to Marathon') });
    await marathon.start();
    logger.info('connected to Marathon', { url: marathon.currentUrl });
    const first = await controller.start();
    logger.info('initial reconcile done', { ...first, leader: election.isLeader() });
    return { grpcPort: grpcPortBound, xdsPort: xdsPortBound, caRootPem: ca.rootCertPem, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A whole number flag, at least `min`. */
function count(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UserError(`${flag}: "${text}" is not a whole number of at least ${min}`);
  return n;
}

function port(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`${flag}: "${text}" is not a port number`);
  return n;
}
