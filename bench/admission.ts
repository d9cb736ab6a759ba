/**
 * The latency the admission proxy adds. `citadel marathon-sim` and `citadel admission-proxy` run
 * as child processes; this process is the client.
 *
 *   1. POST /v2/pods of an opted-in pod: through the proxy (read, checked, injected, forwarded)
 *      against directly to the same simulator with the pod already injected (so Marathon's work
 *      is the same), interleaved pair by pair in alternating order, each over a keep-alive
 *      connection; the figure is the difference of the percentiles (and, beside it, of the pairs).
 *   2. /v2/events: one subscriber directly, one through the proxy, both open at once; per change
 *      (a pod POSTed directly), the time from the change to the event's arrival on each, and the
 *      difference per event.
 *
 * Beside both, the same through a bare TCP relay process (net.Socket piping, no HTTP): the cost of
 * one more process hop on this machine at the moment, which the proxy cannot go below.
 *
 *   node dist/bench/admission.js [writes=1000] [events=1000]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import os from 'node:os';
import { injectConfig } from '../src/inject/config';
import { inject } from '../src/inject/injector';
import { SseParser } from '../src/marathon/sse';
import type { JsonObject } from '../src/common/json';
import { startAdmissionProxyProcess } from '../test/helpers/admission-proxy';
import { startMarathonSimProcess } from '../test/helpers/marathon-sim';
import { percentile } from './stats';

export const TARGETS = { writeP99Ms: 5, eventP99Ms: 1 };

const pod = (id: string): JsonObject => ({
  id,
  labels: { 'sidecar.istio.io/inject': 'true', team: 'bench' },
  containers: [{ name: 'app', resources: { cpus: 0.1, mem: 64 }, image: { kind: 'DOCKER', id: 'nginx:1.27' }, endpoints: [{ name: 'http', containerPort: 8080, hostPort: 0 }], environment: { MODE: 'bench' } }],
  networks: [{ mode: 'container', name: 'dcos' }],
  scaling: { kind: 'fixed', instances: 1 },
});

const RELAY = `
const net = require('net');
const [host, port] = process.argv[1].split(':');
const server = net.createServer({ noDelay: true }, (client) => {
  const up = net.connect({ host, port: Number(port), noDelay: true });
  client.pipe(up);
  up.pipe(client);
  for (const [a, b] of [[client, up], [up, client]]) { a.on('error', () => b.destroy()); a.on('close', () => b.destroy()); }
});
server.listen(0, '127.0.0.1', () => process.stdout.write('relay listening on ' + server.address().port + '\\n'));
`;

/** A bare TCP relay in a process of its own, in front of `target` (http://host:port). */
function startTcpRelay(target: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', RELAY, new URL(target).host], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`the TCP relay exited with ${code}`)));
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /relay listening on (\d+)/.exec(out);
      if (m) resolve({ url: `http://127.0.0.1:${m[1]}`, child });
    });
  });
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

/** One POST over `agent`; resolves with the milliseconds from the request's start to the answer's end. */
function post(agent: http.Agent, base: string, path: string, body: string): Promise<number> {
  const url = new URL(path, base);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 201) reject(new Error(`POST ${url.href}: ${res.statusCode}`));
        else resolve(performance.now() - t0);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A subscription to pod_created_event: the arrival time of each event, by the pod's uri. */
function subscribe(base: string): Promise<{ arrivals: Map<string, number>; waiters: Map<string, () => void>; close(): void }> {
  const arrivals = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  return new Promise((resolve, reject) => {
    let at = 0;
    const parser = new SseParser((e) => {
      if (e.event !== 'pod_created_event') return;
      const uri = (JSON.parse(e.data) as { uri: string }).uri;
      arrivals.set(uri, at);
      waiters.get(uri)?.();
    });
    const req = http.get(`${base}/v2/events?event_type=event_stream_attached&event_type=pod_created_event`, { headers: { Accept: 'text/event-stream' }, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`${base}/v2/events: ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        at = performance.now();
        parser.push(c);
      });
      resolve({ arrivals, waiters, close: () => req.destroy() });
    });
    req.setNoDelay(true);
    req.on('error', reject);
  });
}

const arrival = (s: { arrivals: Map<string, number>; waiters: Map<string, () => void> }, uri: string): Promise<number> =>
  s.arrivals.has(uri) ? Promise.resolve(s.arrivals.get(uri)!) : new Promise((resolve) => s.waiters.set(uri, () => {
    s.waiters.delete(uri);
    resolve(s.arrivals.get(uri)!);
  }));

export async function main(argv = process.argv.slice(2)) {
  const writes = Number(argv[0] ?? 1_000);
  const changes = Number(argv[1] ?? 1_000);
  const warmup = 100;
  const loadStart = os.loadavg();
  const sim = await startMarathonSimProcess(['--heartbeat-interval', '60s'], 30_000);
  const proxy = await startAdmissionProxyProcess(sim.url, ['--log-level', 'warn'], 30_000);
  const config = injectConfig();
  const relay = await startTcpRelay(sim.url);
  const direct = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const viaProxy = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const viaRelay = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // 1. Writes: direct, through the proxy and through the relay, in an order rotating each round.
    const d: number[] = [];
    const p: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < warmup + writes; i++) {
      const runs = [
        () => post(direct, sim.url, '/v2/pods', JSON.stringify(inject(pod(`/bench/direct-${i}`), config).definition)),
        () => post(viaProxy, proxy.url, '/v2/pods', JSON.stringify(pod(`/bench/proxied-${i}`))),
        () => post(viaRelay, relay.url, '/v2/pods', JSON.stringify(inject(pod(`/bench/relayed-${i}`), config).definition)),
      ];
      const times: number[] = [];
      for (let k = 0; k < 3; k++) {
        const which = (i + k) % 3;
        times[which] = await runs[which]();
      }
      if (i < warmup) continue;
      d.push(times[0]);
      p.push(times[1]);
      r.push(times[2]);
    }

    // 2. Events, both subscribers open at once.
    const subDirect = await subscribe(sim.url);
    const subProxy = await subscribe(proxy.url);
    const subRelay = await subscribe(relay.url);
    const eDirect: number[] = [];
    const eProxy: number[] = [];
    const eAdded: number[] = [];
    const eRelayAdded: number[] = [];
    for (let i = 0; i < warmup + changes; i++) {
      const id = `/bench-events/e${i}`;
      const uri = `/v2/pods${id}`;
      const t0 = performance.now();
      const [, td, tp, tr] = await Promise.all([post(direct, sim.url, '/v2/pods', JSON.stringify(pod(id))), arrival(subDirect, uri), arrival(subProxy, uri), arrival(subRelay, uri)]);
      if (i < warmup) continue;
      eDirect.push(td - t0);
      eProxy.push(tp - t0);
      eAdded.push(tp - td);
      eRelayAdded.push(tr - td);
    }
    subDirect.close();
    subProxy.close();
    subRelay.close();

    const sd = sorted(d);
    const sp = sorted(p);
    const sr = sorted(r);
    const pairs = sorted(p.map((x, i) => x - d[i]));
    const er = sorted(eRelayAdded);
    const added = { p50: percentile(sp, 50) - percentile(sd, 50), p99: percentile(sp, 99) - percentile(sd, 99) };
    const ed = sorted(eDirect);
    const ep = sorted(eProxy);
    const ea = sorted(eAdded);
    const loadEnd = os.loadavg();
    const out = (s: string) => process.stdout.write(`${s}\n`);
    const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
    const ms = (x: number) => `${x.toFixed(2)} ms`;
    out(`admission proxy: marathon-sim and citadel admission-proxy as child processes, the client in this process, keep-alive connections; ${warmup} warm-up rounds not counted`);
    out(`load average at start ${loadStart.map((l) => l.toFixed(2)).join(' ')}, at end ${loadEnd.map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);
    out(`  POST /v2/pods, ${writes} of each interleaved: direct (pod already injected) p50 ${ms(percentile(sd, 50))}, p99 ${ms(percentile(sd, 99))}; through the proxy (injecting) p50 ${ms(percentile(sp, 50))}, p99 ${ms(percentile(sp, 99))}`);
    out(`  latency the proxy adds to POST /v2/pods    p50 ${ms(added.p50)}, p99 ${ms(added.p99)} (target <= ${TARGETS.writeP99Ms} ms p99 writes): ${verdict(added.p99 <= TARGETS.writeP99Ms)}  (per pair: p50 ${ms(percentile(pairs, 50))}, p99 ${ms(percentile(pairs, 99))})`);
    out(`    a bare TCP relay process adds             p50 ${ms(percentile(sr, 50) - percentile(sd, 50))}, p99 ${ms(percentile(sr, 99) - percentile(sd, 99))} (the floor of one more process hop now)`);
    out(`  /v2/events, ${changes} changes: change -> event directly p50 ${ms(percentile(ed, 50))}, p99 ${ms(percentile(ed, 99))}; through the proxy p50 ${ms(percentile(ep, 50))}, p99 ${ms(percentile(ep, 99))}`);
    out(`  latency the proxy adds to /v2/events       p50 ${ms(percentile(ea, 50))}, p99 ${ms(percentile(ea, 99))} (target <= ${TARGETS.eventP99Ms} ms p99 events): ${verdict(percentile(ea, 99) <= TARGETS.eventP99Ms)}  (max ${ms(ea[ea.length - 1])})`);
    out(`    a bare TCP relay process adds             p50 ${ms(percentile(er, 50))}, p99 ${ms(percentile(er, 99))} (max ${ms(er[er.length - 1])})`);
    return { added, events: { p50: percentile(ea, 50), p99: percentile(ea, 99) }, relay: { writeP99: percentile(sr, 99) - percentile(sd, 99), eventP99: percentile(er, 99) }, loadStart, loadEnd };
  } finally {
    direct.destroy();
    viaProxy.destroy();
    viaRelay.destroy();
    relay.child.kill('SIGTERM');
    await proxy.stop();
    await sim.stop();
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
