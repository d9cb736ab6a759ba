/**
 * Runs the benchmarks one after another, each as its own `node dist/bench/<name>.js` process so
 * their figures do not interfere (heap, JIT, event loop, file descriptors).
 *
 *   node dist/bench/run.js                 every benchmark
 *   node dist/bench/run.js pki reconcile   a subset, by name or unique prefix
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Benchmark {
  name: string;
  what: string;
}

const BENCHMARKS: Benchmark[] = [
  { name: 'pki-issuance', what: 'in-process EC P-256 issuance on one core, beside the OpenSSL bound and cfssl serve' },
  { name: 'reconcile', what: 'initial reconcile of 10,000 apps into the file store, peak RSS, event-to-secret latency' },
  { name: 'store-throughput', what: 'secret write/read/list, ZooKeeper store beside the file store' },
  { name: 'grpc-create-certificate', what: 'CreateCertificate over mTLS beside cfssl serve, server CPU per certificate' },
  { name: 'grpc-delivery', what: 'cold-start delivery of 10,000 identities to 100 agents' },
  { name: 'reconcile-zk', what: 'initial reconcile into the ZooKeeper store' },
  { name: 'sds', what: 'one node agent in SDS mode: 1,000 identities, 10,000 Envoy-like streams, cold start, warm first secret, a rotation of all, peak RSS' },
  { name: 'xds-generate', what: 'Envoy resources for 2,000 proxies of 1,000 services, cold and after one endpoint change (figures only)' },
  { name: 'xds', what: 'the xDS server with 2,000 ADS clients over mTLS: one task added -> affected clients ACK the new EDS, a mesh-wide policy change -> every client ACKs, server peak RSS and CPU' },
  { name: 'mesh-snapshot', what: 'a new mesh snapshot after one task changes, 1,000 services with 10,000 endpoints' },
  { name: 'admission', what: 'latency the admission proxy adds to POST /v2/pods and to /v2/events delivery' },
  { name: 'envoy', what: 'real Envoys in SDS mode: a policy flip, a scale-up, a node agent crash and an Envoy restart, until Envoy shows each' },
];

function pick(args: string[]): Benchmark[] {
  if (!args.length) return BENCHMARKS;
  return args.map((a) => {
    const exact = BENCHMARKS.find((b) => b.name === a);
    const byPrefix = BENCHMARKS.filter((b) => b.name.startsWith(a));
    const found = exact ?? (byPrefix.length === 1 ? byPrefix[0] : undefined);
    if (!found) {
      throw new Error(`unknown benchmark "${a}"${byPrefix.length > 1 ? ` (matches ${byPrefix.map((b) => b.name).join(', ')})` : ''}; choose from ${BENCHMARKS.map((b) => b.name).join(', ')}`);
    }
    return found;
  });
}

function runChild(file: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { stdio: 'inherit' });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const chosen = pick(argv);
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
  process.stdout.write(`marathon-citadel benchmarks: node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load average ${load()}\n`);
  const failed: string[] = [];
  for (const b of chosen) {
    process.stdout.write(`\n=== ${b.name}: ${b.what} (load average ${load()}) ===\n`);
    const file = path.join(__dirname, `${b.name}.js`);
    if (!existsSync(file)) {
      process.stdout.write(`skipped: ${path.relative(process.cwd(), file)} is not there (bench/${b.name}.ts not written yet, or not built)\n`);
      continue;
    }
    const t0 = performance.now();
    const code = await runChild(file);
    process.stdout.write(`--- ${b.name}: ${code === 0 ? 'done' : `exited with ${code}`} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    if (code !== 0) failed.push(b.name);
  }
  if (failed.length) process.stdout.write(`\nbenchmarks that did not finish: ${failed.join(', ')}\n`);
  return failed.length ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exitCode = 2;
    },
  );
}
