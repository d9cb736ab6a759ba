/**
 * What a new mesh snapshot costs after one task changes: 1,000 services (apps with 10 tasks, on
 * a container network or the host, with labels and an upstreams label), 10,000 endpoints, in a
 * MarathonView with MeshServices following it. Each change flips one task's health in one app,
 * as a re-read after `health_status_changed_event` does (view.put of the re-read app).
 *
 *   node dist/bench/mesh-snapshot.js [services=1000] [tasksPerService=10] [changes=5000]
 *
 * Prints the time per change of view.put alone (the view's signature and indexes) and of
 * view.put with MeshServices making the snapshot, so the difference is the snapshot's cost.
 */
import os from 'node:os';
import { MarathonView } from '../src/marathon/view';
import type { Workload } from '../src/marathon/workload';
import { MeshServices } from '../src/mesh/services';
import { percentile } from './stats';

function workload(i: number, tasks: number, failing: number): Workload {
  const overlay = i % 2 === 0;
  return {
    kind: 'app',
    id: `/ns-${i % 100}/svc-${i}`,
    namespace: `ns-${i % 100}`,
    serviceAccount: `sa-${i % 7}`,
    labels: { team: `team-${i % 37}`, 'citadel.io/upstreams': `/ns-${(i + 1) % 100}/svc-${(i + 1) % 1000}:${10000 + (i % 50000)}`, 'sidecar.istio.io/status': '{"version":"x"}' },
    ports: [{ name: 'http-api', port: 8080, protocol: 'tcp' }, { name: 'grpc', port: 9090, protocol: 'tcp' }],
    instances: Array.from({ length: tasks }, (_, t) => {
      const host = `agent-${(i * tasks + t) % 500}`;
      return {
        id: `ns-${i % 100}_svc-${i}.instance-${String(t).padStart(8, '0')}-0000-4000-8000-000000000000._app.1`,
        host,
        state: 'TASK_RUNNING',
        address: overlay ? `9.${(i >> 8) & 255}.${i & 255}.${t + 1}` : host,
        ports: overlay ? [8080, 9090] : [31000 + t * 2, 31001 + t * 2],
        ...(t === failing ? { unhealthy: 'failing' as const } : {}),
      };
    }),
  };
}

function run(services: number, tasks: number, changes: number, withMesh: boolean): { perChangeUs: number[]; buildMs: number; versions: number } {
  const view = new MarathonView();
  view.replaceAll(Array.from({ length: services }, (_, i) => workload(i, tasks, -1)));
  const t0 = performance.now();
  const mesh = withMesh ? new MeshServices(view) : undefined;
  const buildMs = performance.now() - t0;
  let versions = 0;
  mesh?.onSnapshot(() => versions++);
  const perChangeUs: number[] = [];
  const failing = new Array<number>(services).fill(-1);
  for (let c = 0; c < changes; c++) {
    const i = (c * 7919) % services;
    failing[i] = (failing[i] + 1) % tasks; // another task of it fails each time it comes round
    const next = workload(i, tasks, failing[i]); // made outside the timing: a re-read parses it anyway
    const start = performance.now();
    view.put('app', next.id, next);
    perChangeUs.push((performance.now() - start) * 1000);
  }
  mesh?.close();
  return { perChangeUs: perChangeUs.sort((a, b) => a - b), buildMs, versions };
}

export function main(argv = process.argv.slice(2)): void {
  const services = Number(argv[0] ?? 1000);
  const tasks = Number(argv[1] ?? 10);
  const changes = Number(argv[2] ?? 5000);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  run(services, tasks, Math.min(changes, 500), true); // warm-up
  const viewOnly = run(services, tasks, changes, false);
  const withMesh = run(services, tasks, changes, true);
  const fmt = (r: { perChangeUs: number[] }) => `p50 ${percentile(r.perChangeUs, 50).toFixed(1)} µs, p99 ${percentile(r.perChangeUs, 99).toFixed(1)} µs, mean ${(r.perChangeUs.reduce((a, b) => a + b, 0) / r.perChangeUs.length).toFixed(1)} µs`;
  out(`mesh snapshot after one task changes: ${services.toLocaleString('en-US')} services, ${(services * tasks).toLocaleString('en-US')} endpoints, ${changes.toLocaleString('en-US')} changes; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);
  out(`  first snapshot of all services                 ${withMesh.buildMs.toFixed(1)} ms`);
  out(`  per change, view.put alone                     ${fmt(viewOnly)}`);
  out(`  per change, view.put + new snapshot            ${fmt(withMesh)}  (${withMesh.versions} snapshots)`);
  const mean = (r: { perChangeUs: number[] }) => r.perChangeUs.reduce((a, b) => a + b, 0) / r.perChangeUs.length;
  out(`  the snapshot's share                           ${(mean(withMesh) - mean(viewOnly)).toFixed(1)} µs per change (mean difference)`);
  if (withMesh.versions !== changes) throw new Error(`expected ${changes} snapshots, got ${withMesh.versions}`);
}

if (require.main === module) main();
