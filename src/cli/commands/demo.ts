import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { createLogger } from '../../common/log';
import { parseDuration } from '../../common/duration';
import { MarathonSimulator } from '../../marathon/simulator';
import { FileStore } from '../../store/file-store';
import { checkBundle } from '../../pki/bundle';
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
    .description('a local demo on the embedded defaults: a Marathon simulator, citadel server, secrets appearing and going as apps come and go')
    .option('--dir <dir>', 'where the demo keeps its store (default: a new temp directory, removed afterwards)')
    .option('--delete-delay <duration>', 'how long a gone account keeps its secret (the server default is 1m)', '2s')
    .action(async (o: { dir?: string; deleteDelay: string }) => {
      const ownDir = !o.dir;
      const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), 'citadel-demo-'));
      const say = (text: string) => process.stdout.write(text + '\n');
      const step = (text: string) => say(`\n▶ ${text}`);
      const t0 = Date.now();

      step('starting a Marathon simulator on 127.0.0.1 (agents agent-1..agent-3)');
      const sim = new MarathonSimulator({ agents: ['agent-1', 'agent-2', 'agent-3'] });
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

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}
