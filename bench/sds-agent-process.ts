/**
 * The node agent in SDS mode as a process of its own, for bench/sds.js: what `citadel agent
 * --sds-dir` builds (NodeAgent, its metrics registry and monitoring port), plus commands on stdin
 * that the benchmark needs and the CLI does not have.
 *
 *   node dist/bench/sds-agent-process.js <ca-port> <ca-root.pem> <join-token> <host> <sds-dir> <state-dir>
 *
 * Prints JSON lines: {"started": <Date.now()>, "identities": N} once the node credential is
 * obtained and the placement snapshot applied (every socket listening); {"certified": <Date.now()>}
 * once every identity has its first certificate; after a line `rotate` on stdin,
 * {"rotated": <Date.now()>} once every identity has a new certificate (WorkloadCertificates.rotateNow
 * for all, at once); after `rss`, {"vmHwmKb": N, "vmRssKb": N, ...process.memoryUsage() in MB};
 * after `heapsnapshot <file>`, {"heapsnapshot": <file>} (for finding what holds memory). SIGTERM
 * stops the agent.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { writeHeapSnapshot } from 'node:v8';
import { NodeAgent } from '../src/agent/node-agent';
import { createLogger } from '../src/common/log';
import { newRegistry, startMonitoring } from '../src/common/monitoring';

function procStatusKb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const [port, rootFile, token, host, sdsDir, stateDir] = argv;
  const say = (event: object) => process.stdout.write(JSON.stringify(event) + '\n');
  const logger = createLogger({ level: process.env.AGENT_LOG_LEVEL === 'info' ? 'info' : 'warn' });
  const registry = newRegistry();
  const agent = new NodeAgent({ caAddress: `127.0.0.1:${port}`, caRootPem: readFileSync(rootFile, 'utf8'), joinToken: token, host, sds: { sdsDir }, stateDir, registry, logger });
  const monitoring = await startMonitoring({ port: 0, host: '127.0.0.1', registry, version: 'bench', logger });
  for (const c of agent.readiness()) monitoring.addReadinessCheck(c);
  // SDS_AGENT_GC_EVERY_MS (with --expose-gc): a full GC on a timer, to tell live memory from garbage not yet collected.
  const gcEvery = Number(process.env.SDS_AGENT_GC_EVERY_MS ?? 0);
  if (gcEvery > 0 && typeof global.gc === 'function') setInterval(() => global.gc!(), gcEvery).unref();
  await agent.start();
  const accounts = () => agent.sds!.identities().map((i) => i.account);
  say({ started: Date.now(), identities: accounts().length });
  void Promise.all(accounts().map((a) => agent.workloadCerts!.ensure(a))).then(() => say({ certified: Date.now() }));
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'rotate') {
      void Promise.all(accounts().map((a) => agent.workloadCerts!.rotateNow(a))).then(() => say({ rotated: Date.now() }));
    } else if (line.startsWith('heapsnapshot ')) {
      say({ heapsnapshot: writeHeapSnapshot(line.slice('heapsnapshot '.length)) });
    } else if (line === 'gc' && typeof global.gc === 'function') {
      global.gc(); // with --expose-gc (AGENT_NODE_ARGS): what is garbage and what is held
      say({ gc: Date.now() });
    } else if (line === 'rss') {
      const m = process.memoryUsage();
      const mb = (b: number) => Math.round(b / 1048576);
      say({ vmHwmKb: procStatusKb('VmHWM'), vmRssKb: procStatusKb('VmRSS'), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external), arrayBuffersMb: mb(m.arrayBuffers) });
    }
  });
  process.on('SIGTERM', () => {
    agent.stop().then(() => monitoring.close()).finally(() => process.exit(0));
  });
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
