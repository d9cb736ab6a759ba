/**
 * The secret controller's initial reconcile of a large Marathon: 10,000 apps in 1,000 namespaces
 * naming 3,000 service accounts (4,000 secrets with each namespace's istio.default), the dump of
 * bench/reconcile.ts served by the in-process simulator over HTTP; once into the file store, once
 * into a real ZooKeeper (both fsync, as in production). Target: ZooKeeper within 2x of the file store.
 *
 *   node dist/bench/reconcile-zk.js [apps=10000] [namespaces=1000] [accountsPerNamespace=3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { DEFAULT_ROTATION_POLICY } from '../src/ca/rotation';
import { ReconcileResult, SecretController } from '../src/controller/secret-controller';
import { MarathonClient } from '../src/marathon/client';
import { MarathonSimulator } from '../src/marathon/simulator';
import { openStore } from '../src/store';
import type { Store } from '../src/store/store';
import { startZooKeeper } from '../test/helpers/zookeeper';
import { groupsDump } from './reconcile';

export interface ReconcileFigure {
  store: 'file' | 'zk';
  ms: number;
  result: ReconcileResult;
  stored: number;
}

async function reconcileInto(kind: 'file' | 'zk', store: Store, marathon: MarathonClient, expected: number): Promise<ReconcileFigure> {
  const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
  const controller = new SecretController({ ca, store, accounts: marathon.view, rotation: DEFAULT_ROTATION_POLICY, resyncIntervalMs: 3600_000 });
  try {
    const t0 = performance.now();
    const result = await controller.start();
    const ms = performance.now() - t0;
    const stored = (await store.listSecrets()).length;
    if (result.created !== expected || result.failed !== 0 || stored !== expected) {
      throw new Error(`${kind}: expected ${expected} secrets, got ${JSON.stringify(result)} and ${stored} stored`);
    }
    return { store: kind, ms, result, stored };
  } finally {
    await controller.stop();
  }
}

export async function main(argv = process.argv.slice(2)): Promise<ReconcileFigure[]> {
  const apps = Number(argv[0] ?? 10_000);
  const namespaces = Number(argv[1] ?? 1_000);
  const perNs = Number(argv[2] ?? 3);
  const expected = namespaces * (perNs + (perNs > 0 ? 1 : 0));

  const sim = new MarathonSimulator({ agents: ['agent-1', 'agent-2', 'agent-3', 'agent-4'], heartbeatMs: 60_000 });
  const seeded = sim.seed(groupsDump(apps, namespaces, perNs));
  if (seeded.apps !== apps) throw new Error(`seeded ${seeded.apps} apps, wanted ${apps}`);
  const marathon = new MarathonClient({ urls: [await sim.listen(0)] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-reconcile-'));
  const zk = await startZooKeeper({ forceSync: true });
  const figures: ReconcileFigure[] = [];
  try {
    const t0 = performance.now();
    await marathon.start();
    const listMs = performance.now() - t0;
    const accounts = [...marathon.view.desiredAccounts().values()].reduce((n, s) => n + s.size, 0);
    if (accounts !== expected) throw new Error(`the Marathon view names ${accounts} accounts, wanted ${expected}`);
    console.log(`marathon: ${apps} apps in ${namespaces} namespaces listed in ${(listMs / 1000).toFixed(1)} s`);

    for (const kind of ['file', 'zk'] as const) {
      const store = await openStore(kind === 'file' ? `file:${path.join(dir, 'store')}` : zk.url('/citadel-bench'));
      try {
        const f = await reconcileInto(kind, store, marathon, expected);
        figures.push(f);
        console.log(`  ${kind.padEnd(4)} initial reconcile ${(f.ms / 1000).toFixed(2)} s (${f.result.created} created, ${f.stored} stored, ${((f.result.created / f.ms) * 1000).toFixed(0)} secrets/s)`);
      } finally {
        await store.close();
      }
    }
    const [file, z] = figures;
    const ratio = z.ms / file.ms;
    console.log(
      `reconcile ${apps} apps / ${expected} secrets: file ${(file.ms / 1000).toFixed(1)} s, zk ${(z.ms / 1000).toFixed(1)} s, ratio ${ratio.toFixed(2)}x (target <= 2x) ${ratio <= 2 ? 'MET' : 'NOT MET'}`,
    );
    return figures;
  } finally {
    await marathon.stop();
    await sim.close();
    await zk.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
