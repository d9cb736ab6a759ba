/**
 * Cold start of file-mode delivery: the store already holds 10,000 Citadel secrets (100 hosts x
 * 100 identities, as the secret controller leaves them); then the CA process starts and 100 node
 * agents start with fresh join tokens. Measured: time from starting the CA process until every
 * agent has written all of its 100 identity directories. The CA is a process of its own; the
 * agents run in `processes` processes of bench/delivery-agents.js (on a cluster each is a process
 * on its own host; 100 Node processes would not fit 2 cores, one would serialise them all).
 *
 *   node dist/bench/grpc-delivery.js [hosts=100] [identities-per-host=100] [certs-root] [processes=4]
 *
 * The agents' certs directories go under `certs-root`: by default /dev/shm (tmpfs), where
 * secret files belong (the kubelet mounts secret volumes on tmpfs so keys never reach a disk);
 * pass a disk path to measure that instead.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import os from 'node:os';
import path from 'node:path';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { secretName, spiffeId, workloadIdentity } from '../src/pki/identity';
import { verifyChain } from '../src/pki/verify';
import { newJoinToken } from '../src/server/join-token';
import { FileStore } from '../src/store/file-store';
import { SECRET_TYPE } from '../src/store/store';
import { cpuMicros, startCaProcess } from './grpc-proc';

export interface DeliveryFigures {
  hosts: number;
  identities: number;
  caListeningMs: number;
  allDeliveredMs: number;
  caCpuMs: number;
  agentsCpuMs: number;
  processes: number;
  certsRoot: string;
}

export async function main(argv = process.argv.slice(2)): Promise<DeliveryFigures> {
  const hosts = Number(argv[0] ?? 100);
  const perHost = Number(argv[1] ?? 100);
  const processes = Number(argv[3] ?? 4);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-delivery-'));
  const certsRoot = mkdtempSync(path.join(argv[2] ?? (existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()), 'citadel-bench-certs-'));
  try {
    const store = await FileStore.open(path.join(dir, 'store'));
    const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
    const prep = performance.now();
    const jobs: Array<[number, number]> = [];
    for (let h = 0; h < hosts; h++) for (let i = 0; i < perHost; i++) jobs.push([h, i]);
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < jobs.length) {
        const [h, i] = jobs[next++];
        const id = workloadIdentity(ca.trustDomain, `ns${h}`, `sa${i}`);
        const b = ca.issueKeyCertBundle(id);
        await store.putSecret({
          namespace: `ns${h}`, name: secretName(`sa${i}`), certChainPem: b.certChainPem, keyPem: b.keyPem, rootCertPem: b.rootCertPem,
          metadata: { type: SECRET_TYPE, serviceAccount: `sa${i}`, spiffeId: spiffeId(id), notBefore: b.notBefore.toISOString(), notAfter: b.notAfter.toISOString(), serialNumber: b.serialHex, updatedAt: new Date().toISOString() },
        });
      }
    }));
    const tokens: string[] = [];
    for (let h = 0; h < hosts; h++) {
      const t = newJoinToken(`host-${h}`, 600_000);
      await store.putJoinToken(t.record);
      tokens.push(t.token);
    }
    await store.close();
    process.stdout.write(`prepared ${jobs.length} secrets and ${hosts} join tokens in ${Math.round(performance.now() - prep)} ms\n`);

    const rootFile = path.join(dir, 'root-cert.pem');
    writeFileSync(rootFile, ca.rootCertPem);

    const t0 = performance.now();
    const proc = await startCaProcess(path.join(dir, 'store'), hosts, perHost);
    const caListeningMs = Math.round(performance.now() - t0);
    const groups = Array.from({ length: Math.min(processes, hosts) }, (_, g) => tokens.map((token, h) => ({ host: `host-${h}`, token })).filter((_, h) => h % processes === g));
    const credentialAt: number[] = [];
    const firstSyncAt: number[] = [];
    let complete = 0;
    let allDone!: () => void;
    const done = new Promise<void>((resolve) => (allDone = resolve));
    const children = groups.map((group) => {
      const child = spawn(process.execPath, [...(process.env.AGENT_NODE_ARGS?.split(' ').filter(Boolean) ?? []), path.join(__dirname, 'delivery-agents.js'), String(proc.port), rootFile, certsRoot, String(perHost)], { stdio: ['pipe', 'pipe', 'inherit'] });
      child.stdin!.end(JSON.stringify(group));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const e = JSON.parse(line) as { credential?: string; synced?: string; complete?: string };
        const at = performance.now() - t0;
        if (e.credential) credentialAt.push(at);
        if (e.synced) firstSyncAt.push(at);
        if (e.complete && ++complete === hosts) allDone();
      });
      child.once('exit', (code) => {
        if (code && complete < hosts) process.stdout.write(`an agent process exited with ${code}\n`);
      });
      return child;
    });
    const timeout = setInterval(() => process.stdout.write(`still waiting: ${complete}/${hosts} agents complete\n`), 30_000);
    await done;
    clearInterval(timeout);
    const allDeliveredMs = Math.round(performance.now() - t0);
    const caCpuMs = Math.round(cpuMicros(proc.pid) / 1000);
    const agentsCpuMs = Math.round(children.reduce((sum, c) => sum + cpuMicros(c.pid!), 0) / 1000);
    const span = (xs: number[]) => `${Math.round(Math.min(...xs))}..${Math.round(Math.max(...xs))} ms`;
    process.stdout.write(`node certificates obtained ${span(credentialAt)}; first files written ${span(firstSyncAt)}\n`);
    // Spot checks: what the sidecars would mount verifies and names its identity.
    for (const h of [0, hosts - 1]) {
      const chain = readFileSync(path.join(certsRoot, `host-${h}`, `ns${h}`, `sa${perHost - 1}`, 'cert-chain.pem'), 'utf8');
      const check = verifyChain(chain, ca.rootCertPem);
      if (!check.ok || check.leaf?.san?.uris[0] !== `spiffe://cluster.local/ns/ns${h}/sa/sa${perHost - 1}`) throw new Error(`bad bundle on host-${h}: ${check.problems}`);
    }
    await Promise.all(children.map((c) => new Promise((resolve) => {
      c.once('exit', resolve);
      c.kill('SIGTERM');
    })));
    await proc.stop();
    const figures = { hosts, identities: hosts * perHost, processes: children.length, caListeningMs, allDeliveredMs, caCpuMs, agentsCpuMs, certsRoot: path.dirname(certsRoot) };
    process.stdout.write(`${figures.identities} identities on ${hosts} agents (certs under ${figures.certsRoot}): CA listening after ${caListeningMs} ms, all files written after ${allDeliveredMs} ms (target <= 10000) ${allDeliveredMs <= 10_000 ? 'MET' : 'NOT MET'}; CPU: CA ${caCpuMs} ms, agents ${agentsCpuMs} ms in ${children.length} processes\n`);
    return figures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(certsRoot, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
