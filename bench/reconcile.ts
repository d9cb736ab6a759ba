/**
 * Initial reconcile at scale, then event-to-secret latency. `citadel marathon-sim` runs as a child
 * process seeded with a generated /v2/groups dump (10,000 apps in 1,000 namespaces naming 3,000
 * service accounts, so 4,000 secrets with istio.default); this process is the citadel side:
 * MarathonClient + SecretController + CertificateAuthority + FileStore (fsync on, syncfs group
 * commit), wired as `citadel server` wires them, without gRPC.
 *
 *   1. wall time from MarathonClient.start() to the end of the controller's first reconcile,
 *      and this process's peak RSS (VmHWM);
 *   2. event-to-secret latency over sequential deployments: POST /v2/apps of an app in a new
 *      namespace naming a new account, until the store reports istio.<account> written and
 *      getSecret reads it back.
 *
 *   node dist/bench/reconcile.js [apps=10000] [namespaces=1000] [accountsPerNamespace=3] [deployments=1000]
 *   CITADEL_BENCH_DIR=/dev/shm node dist/bench/reconcile.js   (the store on tmpfs: the code without the disk)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { DEFAULT_ROTATION_POLICY } from '../src/ca/rotation';
import { SecretController } from '../src/controller/secret-controller';
import { MarathonClient } from '../src/marathon/client';
import { nativeAddon } from '../src/common/native';
import { FileStore } from '../src/store/file-store';
import { startMarathonSimProcess } from '../test/helpers/marathon-sim';
import { percentile } from './stats';

export const TARGETS = { reconcileMs: 3_000, rssMb: 300, p99Ms: 100 };

export interface ReconcileFigures {
  apps: number;
  secrets: number;
  listMs: number;
  reconcileMs: number;
  peakRssMb: number;
  latency: { n: number; p50: number; p99: number; max: number };
  loadavg: number[];
}

/** A /v2/groups dump: `apps` apps spread over `namespaces` top-level groups, each naming one of `accountsPerNamespace` accounts. */
export function groupsDump(apps: number, namespaces: number, accountsPerNamespace: number): unknown {
  const app = (i: number) => ({
    id: `/ns-${i % namespaces}/app-${i}`,
    cmd: 'envoy -c /etc/istio/proxy/envoy.yaml',
    cpus: 0.1,
    mem: 64,
    instances: 2,
    labels: { 'istio.io/service-account': `sa-${Math.floor(i / namespaces) % accountsPerNamespace}`, team: `team-${i % 37}` },
    env: { SERVICE: `app-${i}` },
  });
  const groups = Array.from({ length: namespaces }, (_, n) => ({ id: `/ns-${n}`, apps: [] as unknown[], groups: [], pods: [], dependencies: [] }));
  for (let i = 0; i < apps; i++) groups[i % namespaces].apps.push(app(i));
  return { id: '/', apps: [], groups, pods: [], dependencies: [] };
}

/**
 * What creating an inode costs on this filesystem right now (a directory and a small file, as a
 * namespace and its first secret are made): the figure the store writes' time scales with. On
 * this machine's disk (ext4 without a journal) it moves between about 25 µs and over 1 ms from
 * one minute to the next, with the number of inodes deleted in the same block group in the last
 * minute. `spread` probes under a `chattr +T` directory, as the store's namespaces are made.
 */
function inodeProbeMicros(dir: string, spread: boolean, n = 300): number {
  const probe = mkdtempSync(path.join(dir, 'probe-'));
  if (spread) nativeAddon?.markTopDir(probe);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    mkdirSync(path.join(probe, `d${i}`));
    writeFileSync(path.join(probe, `d${i}`, 'f'), 'x'.repeat(1200), { flag: 'wx' });
  }
  const us = ((performance.now() - t0) * 1000) / (2 * n);
  rmSync(probe, { recursive: true, force: true });
  return us;
}

const probes = (dir: string) => `${inodeProbeMicros(dir, false).toFixed(0)} µs (${inodeProbeMicros(dir, true).toFixed(0)} µs spread as the store spreads namespaces)`;

/** Peak resident set of this process in MB (VmHWM). */
function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

export async function main(argv = process.argv.slice(2)): Promise<ReconcileFigures> {
  const apps = Number(argv[0] ?? 10_000);
  const namespaces = Number(argv[1] ?? 1_000);
  const perNs = Number(argv[2] ?? 3);
  const deployments = Number(argv[3] ?? 1_000);
  const loadStart = os.loadavg();
  // CITADEL_BENCH_DIR=/dev/shm separates what the disk costs from what the code costs.
  const dir = mkdtempSync(path.join(process.env.CITADEL_BENCH_DIR ?? os.tmpdir(), 'citadel-bench-reconcile-'));
  const seedFile = path.join(dir, 'groups.json');
  writeFileSync(seedFile, JSON.stringify(groupsDump(apps, namespaces, perNs)));
  const probeBefore = probes(dir);
  const sim = await startMarathonSimProcess(['--seed', seedFile, '--heartbeat-interval', '10s'], 60_000);
  const store = await FileStore.open(path.join(dir, 'store'));
  const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
  const marathon = new MarathonClient({ urls: [sim.url] });
  const controller = new SecretController({ ca, store, accounts: marathon.view, rotation: DEFAULT_ROTATION_POLICY });
  const rssBeforeMb = peakRssMb();
  try {
    // 1. Initial reconcile.
    const t0 = performance.now();
    await marathon.start();
    const listMs = performance.now() - t0;
    const first = await controller.start();
    const reconcileMs = performance.now() - t0;
    const rssAfterReconcileMb = peakRssMb();
    const secrets = first.created;
    const expected = namespaces * (perNs + 1);
    if (secrets !== expected || first.failed) throw new Error(`first reconcile created ${secrets} secrets (${first.failed} failed), expected ${expected}`);

    // 2. Event-to-secret latency, one deployment at a time.
    const waiting = new Map<string, () => void>();
    const unwatch = store.watch((e) => {
      if (e.type === 'put') waiting.get(`${e.namespace}/${e.name}`)?.();
    });
    const latencies: number[] = [];
    for (let i = 0; i < deployments; i++) {
      const ns = `dep-${i}`;
      const sa = `svc-${i}`;
      const written = new Promise<void>((resolve) => waiting.set(`${ns}/istio.${sa}`, resolve));
      const start = performance.now();
      const res = await fetch(`${sim.url}/v2/apps`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: `/${ns}/app`, cmd: 'sleep 3600', cpus: 0.1, mem: 32, instances: 1, labels: { 'istio.io/service-account': sa } }),
      });
      if (res.status !== 201) throw new Error(`POST /v2/apps: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
      await written;
      if (!(await store.getSecret(ns, `istio.${sa}`))) throw new Error(`secret ${ns}/istio.${sa} was reported written but cannot be read`);
      latencies.push(performance.now() - start);
      waiting.delete(`${ns}/istio.${sa}`);
    }
    unwatch();
    latencies.sort((a, b) => a - b);
    const figures: ReconcileFigures = {
      apps,
      secrets,
      listMs,
      reconcileMs,
      peakRssMb: peakRssMb(),
      latency: { n: latencies.length, p50: percentile(latencies, 50) ?? NaN, p99: percentile(latencies, 99) ?? NaN, max: latencies[latencies.length - 1] ?? NaN },
      loadavg: os.loadavg(),
    };

    const out = (s: string) => process.stdout.write(`${s}\n`);
    const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
    out(`initial reconcile: ${apps.toLocaleString('en-US')} apps in ${namespaces.toLocaleString('en-US')} namespaces, ${(namespaces * perNs).toLocaleString('en-US')} accounts -> ${secrets.toLocaleString('en-US')} secrets; marathon-sim as a child process, citadel side in this process, file store (fsync on)`);
    out(`load average at start ${loadStart.map((l) => l.toFixed(2)).join(' ')}, at end ${figures.loadavg.map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);
    out(`store on ${dir}: creating an inode costs ${probeBefore} before the run, ${probes(dir)} after; a new secret creates 1 inode, its file`);
    out(`  MarathonClient.start() -> first reconcile done  ${Math.round(reconcileMs).toLocaleString('en-US').padStart(6)} ms (target <= ${TARGETS.reconcileMs.toLocaleString('en-US')} ms): ${verdict(reconcileMs <= TARGETS.reconcileMs)}`);
    out(`    of which listing Marathon (first list)        ${Math.round(listMs).toLocaleString('en-US').padStart(6)} ms; keys, certificates and store writes ${Math.round(reconcileMs - listMs).toLocaleString('en-US')} ms (${Math.round(((reconcileMs - listMs) * 1000) / secrets)} µs/secret)`);
    const l = marathon.stats.lastList;
    out(`      the list: Marathon (the simulator) answering ${l.answerMs} ms, its ${(l.bytes / 1e6).toFixed(0)} MB arriving ${l.bodyMs} ms, JSON.parse ${l.parseMs} ms, typed values and view ${l.viewMs} ms`);
    out(`  peak RSS of the citadel process (VmHWM)         ${Math.round(figures.peakRssMb).toString().padStart(6)} MB (target <= ${TARGETS.rssMb} MB): ${verdict(figures.peakRssMb <= TARGETS.rssMb)}  (${Math.round(rssBeforeMb)} MB before start, incl. writing the seed dump; ${Math.round(rssAfterReconcileMb)} MB at the end of the reconcile)`);
    out(`  event-to-secret over ${latencies.length} deployments          p50 ${figures.latency.p50.toFixed(1)} ms, p99 ${figures.latency.p99.toFixed(1)} ms (target p99 <= ${TARGETS.p99Ms} ms): ${verdict(figures.latency.p99 <= TARGETS.p99Ms)}  (max ${figures.latency.max.toFixed(1)} ms)`);
    return figures;
  } finally {
    await controller.stop();
    await marathon.stop();
    await store.close();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
