/**
 * SDS mode at scale on one node: one agent (its own process, bench/sds-agent-process.js), 1,000
 * identities placed on its host, 10,000 SDS streams (ten per identity, one resource name each, as
 * Envoy opens them: bench/sds-clients.js, a process of its own), the CA on the same machine (its
 * own process, bench/grpc-ca-process.js, rate limit off).
 *
 *   node dist/bench/sds.js [identities=1000] [streams-per-identity=10] [warm-samples=2000]
 *
 * Figures, each beside its target and the load average when it was taken:
 * - cold start: from spawning the agent (node credential from a join token, placement snapshot,
 *   1,000 sockets, 1,000 keys and CSRs) until every stream has its first secret;
 * - warm first secret: a stream opened on an identity that has its certificate, request to
 *   response, p50/p99 over sequential samples while the 10,000 streams stay open;
 * - one rotation of every identity at once (rotateNow for all 1,000: new keys, CSRs, pushes)
 *   until every stream has the new secret;
 * - the agent's peak RSS (VmHWM) over the whole run.
 * Anchor: spire#5348, a SPIRE 1.9 agent holding about 3.5 GB for about 450 SDS connections.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { newJoinToken } from '../src/server/join-token';
import { FileStore } from '../src/store/file-store';
import { cpuMicros, startCaProcess } from './grpc-proc';

const TARGETS = { coldMs: 3000, warmP99Ms: 10, rssMb: 300, rotationMs: 1000 };
const ANCHOR = 'SPIRE 1.9 agent: about 3.5 GB for about 450 SDS connections (spire#5348)';

/** A child process that speaks JSON lines on stdout. */
class LineProcess {
  private readonly seen: Array<Record<string, unknown>> = [];
  private readonly waiters: Array<{ key: string; resolve: (v: Record<string, unknown>) => void }> = [];

  constructor(readonly child: ChildProcess, what: string) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return void process.stderr.write(`[${what}] ${line}\n`); // e.g. --trace-gc in AGENT_NODE_ARGS
      const event = JSON.parse(line) as Record<string, unknown>;
      const w = this.waiters.find((x) => x.key in event);
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(event);
      } else this.seen.push(event);
    });
    child.once('exit', (code) => {
      if (this.waiters.length) process.stderr.write(`${what} exited with ${code} while waited for (${this.waiters.map((w) => w.key)})\n`);
    });
  }

  /** The first event (already received or to come) that has `key`. */
  next(key: string): Promise<Record<string, unknown>> {
    const i = this.seen.findIndex((e) => key in e);
    if (i >= 0) return Promise.resolve(this.seen.splice(i, 1)[0]);
    return new Promise((resolve) => this.waiters.push({ key, resolve }));
  }

  send(line: string): void {
    this.child.stdin!.write(line + '\n');
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const verdict = (ok: boolean) => (ok ? 'MET' : 'NOT MET');

export interface SdsFigures {
  identities: number;
  streams: number;
  coldMs: number;
  warmP50Ms: number;
  warmP99Ms: number;
  rotationMs: number;
  rssMb: number;
}

export async function main(argv = process.argv.slice(2)): Promise<SdsFigures> {
  const identities = Number(argv[0] ?? 1000);
  const perIdentity = Number(argv[1] ?? 10);
  const warmSamples = Number(argv[2] ?? 2000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-sds-'));
  const sdsDir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-sds-sockets-'));
  const children: LineProcess[] = [];
  let ca: Awaited<ReturnType<typeof startCaProcess>> | undefined;
  try {
    const store = await FileStore.open(path.join(dir, 'store'));
    const authority = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
    const token = newJoinToken('host-0', 600_000);
    await store.putJoinToken(token.record);
    await store.close();
    const rootFile = path.join(dir, 'root-cert.pem');
    writeFileSync(rootFile, authority.rootCertPem);
    ca = await startCaProcess(path.join(dir, 'store'), 1, identities); // places ns0/sa<i> on host-0

    const clients = new LineProcess(spawn(process.execPath, [...nodeArgs('CLIENT_NODE_ARGS'), path.join(__dirname, 'sds-clients.js')], { stdio: ['pipe', 'pipe', 'inherit'] }), 'sds-clients');
    children.push(clients);
    const ids = Array.from({ length: identities }, (_, i) => ['ns0', `sa${i}`]);
    clients.send(JSON.stringify({ sdsDir, identities: ids, perIdentity, trustDomain: authority.trustDomain }));

    process.stdout.write(`${identities} identities, ${identities * perIdentity} streams (${perIdentity} per identity, one name each, half default and half the SPIFFE ID); CA pid ${ca.pid}; load average ${load()}\n`);
    const t0 = Date.now();
    const agent = new LineProcess(
      spawn(process.execPath, [...nodeArgs('AGENT_NODE_ARGS'), path.join(__dirname, 'sds-agent-process.js'), String(ca.port), rootFile, token.token, 'host-0', sdsDir, path.join(dir, 'state')], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...agentEnv() } }),
      'sds-agent-process',
    );
    children.push(agent);
    const agentCpu = () => Math.round(cpuMicros(agent.child.pid!) / 1000);
    const started = await agent.next('started');
    if (started.identities !== identities) throw new Error(`the agent serves ${String(started.identities)} identities, expected ${identities}`);
    clients.send('open');
    const opened = await clients.next('firstAll');
    const certified = await agent.next('certified');
    agent.send('rss');
    const rssCold = await agent.next('vmHwmKb');
    if (process.env.SDS_BENCH_GC) {
      agent.send('gc');
      await agent.next('gc');
      agent.send('rss');
      const after = await agent.next('vmHwmKb');
      process.stdout.write(`after a full GC: RSS ${Math.round(Number(after.vmRssKb) / 1024)} MB, JS heap ${String(after.heapUsedMb)} of ${String(after.heapTotalMb)} MB, external ${String(after.externalMb)} MB, array buffers ${String(after.arrayBuffersMb)} MB\n`);
    }
    if (process.env.SDS_BENCH_HEAP_SNAPSHOT) {
      agent.send(`heapsnapshot ${process.env.SDS_BENCH_HEAP_SNAPSHOT}`);
      process.stdout.write(`heap snapshot of the agent after the cold start: ${String((await agent.next('heapsnapshot')).heapsnapshot)}\n`);
    }
    const coldCpuMs = agentCpu();
    const coldMs = Number(opened.firstAll) - t0;
    const ms = (t: unknown) => `${Number(t) - t0} ms`;
    process.stdout.write(`cold start: agent up with ${identities} sockets after ${ms(started.started)}, clients connected ${ms(opened.connected)}, every identity certified ${ms(certified.certified)}, every stream's first secret ${coldMs} ms (target <= ${TARGETS.coldMs}) ${verdict(coldMs <= TARGETS.coldMs)}; agent CPU ${coldCpuMs} ms; agent RSS then ${Math.round(Number(rssCold.vmRssKb) / 1024)} MB (peak ${Math.round(Number(rssCold.vmHwmKb) / 1024)} MB; JS heap ${String(rssCold.heapUsedMb)} of ${String(rssCold.heapTotalMb)} MB, external ${String(rssCold.externalMb)} MB); load average ${load()}\n`);

    clients.send('verify');
    const verified = await clients.next('verified');
    if ((verified.problems as string[]).length) throw new Error(`wrong secrets served: ${JSON.stringify(verified.problems)}`);
    process.stdout.write(`checked: the last secret of one stream per identity names that identity (${String(verified.verified)})\n`);

    const cpuBeforeWarm = agentCpu();
    clients.send(`warm ${warmSamples}`);
    const warm = (await clients.next('warm')).warm as { n: number; p50Ms: number; p99Ms: number; maxMs: number };
    process.stdout.write(`warm first secret (${warm.n} streams opened one at a time on warm identities, beside the open ones): p50 ${warm.p50Ms} ms, p99 ${warm.p99Ms} ms (target <= ${TARGETS.warmP99Ms}) ${verdict(warm.p99Ms <= TARGETS.warmP99Ms)}, max ${warm.maxMs} ms; agent CPU ${Math.round(((agentCpu() - cpuBeforeWarm) * 1000) / warm.n)} µs a stream; load average ${load()}\n`);

    clients.send('mark');
    await clients.next('marked');
    const cpuBeforeRotation = agentCpu();
    const tRotate = Date.now();
    agent.send('rotate');
    const updated = await clients.next('updatedAll');
    const rotated = await agent.next('rotated');
    const rotationMs = Number(updated.updatedAll) - tRotate;
    const rotationCpuMs = agentCpu() - cpuBeforeRotation;
    process.stdout.write(`rotation of all ${identities} identities at once: every certificate renewed ${Number(rotated.rotated) - tRotate} ms, first push seen ${Number(updated.firstUpdate) - tRotate} ms, every stream updated ${rotationMs} ms (target <= ${TARGETS.rotationMs}) ${verdict(rotationMs <= TARGETS.rotationMs)}; agent CPU ${rotationCpuMs} ms; load average ${load()}\n`);

    agent.send('rss');
    const rss = await agent.next('vmHwmKb');
    const rssMb = Math.round(Number(rss.vmHwmKb) / 1024);
    const cpu = (pid: number | undefined) => (pid === undefined ? 0 : Math.round(cpuMicros(pid) / 1000));
    process.stdout.write(`agent peak RSS (VmHWM) ${rssMb} MB, now ${Math.round(Number(rss.vmRssKb) / 1024)} MB, JS heap ${String(rss.heapUsedMb)} of ${String(rss.heapTotalMb)} MB, external ${String(rss.externalMb)} MB (target <= ${TARGETS.rssMb}) ${verdict(rssMb <= TARGETS.rssMb)}; anchor: ${ANCHOR}\n`);
    process.stdout.write(`CPU over the run: agent ${cpu(agent.child.pid)} ms, CA ${cpu(ca.pid)} ms, clients ${cpu(clients.child.pid)} ms\n`);
    return { identities, streams: identities * perIdentity, coldMs, warmP50Ms: warm.p50Ms, warmP99Ms: warm.p99Ms, rotationMs, rssMb };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await ca?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(sdsDir, { recursive: true, force: true });
  }
}

/** AGENT_ENV="K=V K2=V2": environment for the agent process only (e.g. glibc's MALLOC_* tunables). */
function agentEnv(): Record<string, string> {
  return Object.fromEntries((process.env.AGENT_ENV ?? '').split(' ').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

function nodeArgs(env: string): string[] {
  return process.env[env]?.split(' ').filter(Boolean) ?? [];
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
