import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { createLogger } from '../../common/log';
import { parseDuration } from '../../common/duration';
import { MarathonSimulator } from '../../marathon/simulator';
import { FileStore } from '../../store/file-store';
import { checkBundle } from '../../pki/bundle';
import { DemoHosts } from '../demo/demo-hosts';
import { ENVOY_INSTALL_COMMAND, findEnvoy } from '../demo/envoy-binary';
import { envoyMeshAct } from '../demo/envoy-mesh-act';
import { grpcMeshAct } from '../demo/grpc-mesh-act';
import { injectionAct } from '../demo/injection-act';
import { canListenOn, type MeshStage } from '../demo/mesh-stage';
import { waitUntil } from '../demo/wait';
import { startServer } from './server';
import type { RegisterCommand } from './index';

/** The namespaces and accounts the demo's Marathon starts with. */
const SEED_APPS = [
  { id: '/prod/payments/api', instances: 2, labels: { 'istio.io/service-account': 'payments' } },
  { id: '/prod/payments/worker', instances: 1, labels: { 'istio.io/service-account': 'payments' } },
  { id: '/prod/frontend', instances: 3, labels: { 'istio.io/service-account': 'frontend' } },
  { id: '/staging/frontend', instances: 1, labels: { 'istio.io/service-account': 'frontend' } },
  { id: '/tools/grafana', instances: 1, labels: {} },
];

export const registerDemo: RegisterCommand = (program: Command) => {
  program
    .command('demo')
    .description('a local demo on the embedded defaults: a Marathon simulator, citadel server, secrets appearing and going as apps come and go; then the mesh (node agents, sidecars, mTLS by policy) and sidecar injection')
    .option('--dir <dir>', 'where the demo keeps its store (default: a new temp directory, removed afterwards)')
    .option('--delete-delay <duration>', 'how long a gone account keeps its secret (the server default is 1m)', '2s')
    .option('--envoy <path>', 'the Envoy binary for the mesh acts (default: $ENVOY_BIN, .venv-envoy/bin/envoy, envoy on PATH; without one, proxyless gRPC)')
    .action(async (o: { dir?: string; deleteDelay: string; envoy?: string }) => {
      const ownDir = !o.dir;
      const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), 'citadel-demo-'));
      const say = (text: string) => process.stdout.write(text + '\n');
      const step = (text: string) => say(`\n▶ ${text}`);
      const t0 = Date.now();

      step('starting a Marathon simulator on 127.0.0.1 (agents agent-1..agent-3)');
      // container IPs on loopback (127.0.1.x), so this machine's sidecars can bind them
      const sim = new MarathonSimulator({ agents: AGENTS, containerNetworkCidr: '127.0.1.0/24' });
      const marathonUrl = await sim.listen(0);
      for (const app of SEED_APPS) sim.state.createApp({ ...app, cmd: 'sleep 3600' });
      say(`  ${marathonUrl} with ${SEED_APPS.length} apps in namespaces prod, staging, tools`);

      const store = `file:${path.join(dir, 'citadel-data')}`;
      step(`starting citadel server (store ${store}, self-signed root, trust domain cluster.local)`);
      const server = await startServer(
        {
          store,
          trustDomain: 'cluster.local',
          keyAlgorithm: 'ec-p256',
          selfSignedCaCertTtl: '3650d',
          workloadCertTtl: '24h',
          maxWorkloadCertTtl: '90d',
          marathon: [marathonUrl],
          logFormat: 'text',
          logLevel: 'error',
          workloadCertGracePeriodRatio: '0.5',
          workloadCertMinGracePeriod: '10m',
          secretDeleteDelay: o.deleteDelay,
          resyncInterval: '1m',
          monitoringPort: '0',
          grpcPort: '0',
          xdsPort: '0',
          xds: true,
          rootNamespace: 'istio-system',
          grpc: true,
        },
        createLogger({ format: 'text', level: 'error' }),
      );
      const reader = await FileStore.open(path.join(dir, 'citadel-data'));
      try {
        const initial = await reader.listSecrets();
        say(`  initial reconcile wrote ${initial.length} secrets:`);
        for (const s of initial) say(`    ${(s.namespace + '/' + s.name).padEnd(24)} ${s.metadata.spiffeId}  expires ${s.metadata.notAfter}`);

        step('deploying /payments/api with service account "checkout" (a new namespace)');
        const deployed = Date.now();
        const res = await fetch(`${marathonUrl}/v2/apps`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id: '/payments/api', cmd: 'sleep 3600', instances: 2, labels: { 'istio.io/service-account': 'checkout' } }),
        });
        say(`  Marathon answered ${res.status} ${res.statusText}`);
        const secret = await waitFor(() => reader.getSecret('payments', 'istio.checkout'), 5000);
        if (!secret) throw new Error('the secret payments/istio.checkout did not appear within 5 s');
        say(`  payments/istio.checkout appeared ${Date.now() - deployed} ms after the deployment`);
        say(`    ${secret.metadata.spiffeId}, serial ${secret.metadata.serialNumber.slice(0, 16)}…`);
        const { problems } = checkBundle(secret);
        say(`    cert verify: ${problems.length ? 'FAILED: ' + problems.join('; ') : 'chain to root OK, X.509-SVID rules OK, key matches'}`);
        say(`    stored in ${path.join(dir, 'citadel-data', 'secrets', 'payments', 'istio.checkout')}; \`citadel store get payments checkout -o DIR\` writes its cert-chain.pem, key.pem, root-cert.pem`);

        step(`removing /payments/api; its secret goes after the delete delay (${o.deleteDelay})`);
        const removed = Date.now();
        await fetch(`${marathonUrl}/v2/apps/payments/api`, { method: 'DELETE' });
        const gone = await waitFor(async () => ((await reader.getSecret('payments', 'istio.checkout')) ? undefined : true), parseDuration(o.deleteDelay) + 10_000);
        say(gone ? `  payments/istio.checkout was deleted ${Date.now() - removed} ms after the app was removed` : '  the secret is still there (unexpected)');
        if (!gone || problems.length) process.exitCode = 1;

        await meshActs({ step, say, dir, marathonUrl, store: reader, trustDomain: 'cluster.local', envoyFlag: o.envoy, caRootPem: server.caRootPem, grpcPort: server.grpcPort, xdsPort: server.xdsPort });
      } catch (err) {
        say(`  FAILED: ${(err as Error).message}`);
        process.exitCode = 1;
      } finally {
        step('stopping');
        await server.close();
        await reader.close();
        await sim.close();
        if (ownDir) rmSync(dir, { recursive: true, force: true });
        say(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s${ownDir ? '' : `; the store is kept in ${dir}`}`);
      }
    });
};

const AGENTS = ['agent-1', 'agent-2', 'agent-3'];

/** What the demo's first acts hold, undefined when it did not come within `timeoutMs`. */
function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T | undefined> {
  return waitUntil('', probe, timeoutMs, 10).catch(() => undefined);
}

/**
 * The mesh acts, on node agents (SDS and files) on the simulator's three agents: the mesh with
 * Envoy sidecars (or, without Envoy, with proxyless gRPC), then sidecar injection.
 */
async function meshActs(o: Omit<MeshStage, 'hosts'> & { envoyFlag?: string; caRootPem: string; grpcPort: number; xdsPort: number }): Promise<void> {
  const { step, say } = o;
  if (!(await canListenOn('127.0.1.1'))) {
    step('mesh: skipped: this machine cannot listen on 127.0.1.1, where the simulator puts container IPs (Linux has all of 127.0.0.0/8 on loopback)');
    return;
  }
  step(`mesh: a node agent on each of ${AGENTS.join(', ')} (citadel agent --sds-dir --certs-dir): a socket per identity placed there, for SDS and for xDS`);
  const t0 = Date.now();
  const hosts = await DemoHosts.start({ root: path.join(o.dir, 'hosts'), hosts: AGENTS, store: o.store, caAddress: `127.0.0.1:${o.grpcPort}`, caRootPem: o.caRootPem, xdsAddress: `127.0.0.1:${o.xdsPort}` });
  try {
    say(`  ${AGENTS.length} node agents attested with join tokens in ${Date.now() - t0} ms; each host's directories are under ${path.join(o.dir, 'hosts')}/<host>`);
    const stage: MeshStage = { ...o, hosts };
    const envoy = findEnvoy(o.envoyFlag);
    if ('why' in envoy) {
      step(`mesh: ${envoy.why}; to get one: ${ENVOY_INSTALL_COMMAND}`);
      say('  the same act with proxyless gRPC instead');
      await grpcMeshAct(stage);
    } else {
      await envoyMeshAct(stage, envoy.bin);
    }
    await injectionAct(stage, envoy.bin);
  } finally {
    await hosts.stop();
  }
}
