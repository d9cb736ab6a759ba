/**
 * Cold start of file-mode delivery: the store already holds 10,000 Citadel secrets (100 hosts x
 * 100 identities, as the secret controller leaves them); then the CA process starts and 100 node
 * agents start with fresh join tokens. Measured: time from starting the CA process until every
 * agent has written all of its 100 identity directories. The agents run in this process (100
 * Node processes would not fit 2 cores); the CA is a process of its own.
 *
 *   node dist/bench/grpc-delivery.js [hosts=100] [identities-per-host=100] [certs-root]
 *
 * The agents' certs directories go under `certs-root`: by default /dev/shm (tmpfs), where
 * secret files belong (the kubelet mounts secret volumes on tmpfs so keys never reach a disk);
 * pass a disk path to measure that instead.
 */
import { existsSync } from 'node:fs';
// 100 agents share this process's libuv threadpool for their file writes (each real agent has its own).
process.env.UV_THREADPOOL_SIZE ??= '16';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileAgent } from '../src/agent/file-agent';
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
  certsRoot: string;
}

export async function main(argv = process.argv.slice(2)): Promise<DeliveryFigures> {
  const hosts = Number(argv[0] ?? 100);
  const perHost = Number(argv[1] ?? 100);
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
    const tokens = [];
    for (let h = 0; h < hosts; h++) {
      const t = newJoinToken(`host-${h}`, 600_000);
      await store.putJoinToken(t.record);
      tokens.push(t.token);
    }
    await store.close();
    process.stdout.write(`prepared ${jobs.length} secrets and ${hosts} join tokens in ${Math.round(performance.now() - prep)} ms\n`);

    const t0 = performance.now();
    const proc = await startCaProcess(path.join(dir, 'store'), hosts, perHost);
    const caListeningMs = Math.round(performance.now() - t0);
    const agents = tokens.map((token, h) => new FileAgent({ caAddress: `127.0.0.1:${proc.port}`, caRootPem: ca.rootCertPem, joinToken: token, host: `host-${h}`, certsDir: path.join(certsRoot, `host-${h}`) }));
    let complete = 0;
    const credentialAt: number[] = [];
    const firstSyncAt: number[] = [];
    for (const a of agents) {
      a.once('credential', () => credentialAt.push(performance.now() - t0));
      a.once('synced', () => firstSyncAt.push(performance.now() - t0));
    }
    const done = new Promise<void>((resolve) => {
      for (const a of agents) {
        let finished = false;
        a.on('synced', (present: unknown[]) => {
          if (!finished && present.length === perHost) {
            finished = true;
            if (++complete === agents.length) resolve();
          }
        });
      }
    });
    await Promise.all(agents.map((a) => a.start()));
    const timeout = setTimeout(() => process.stdout.write(`still waiting: ${complete}/${agents.length} agents complete\n`), 30_000);
    await done;
    clearTimeout(timeout);
    const allDeliveredMs = Math.round(performance.now() - t0);
    const span = (xs: number[]) => `${Math.round(Math.min(...xs))}..${Math.round(Math.max(...xs))} ms`;
    process.stdout.write(`node certificates obtained ${span(credentialAt)}; first files written ${span(firstSyncAt)}\n`);
    const caCpuMs = Math.round(cpuMicros(proc.pid) / 1000);
    // Spot checks: what the sidecars would mount verifies and names its identity.
    for (const h of [0, hosts - 1]) {
      const bundle = await agents[h].certs.read(`ns${h}`, `sa${perHost - 1}`);
      const check = verifyChain(bundle!['cert-chain.pem'], ca.rootCertPem);
      if (!check.ok || check.leaf?.san?.uris[0] !== `spiffe://cluster.local/ns/ns${h}/sa/sa${perHost - 1}`) throw new Error(`bad bundle on host-${h}: ${check.problems}`);
    }
    await Promise.all(agents.map((a) => a.stop()));
    await proc.stop();
    const figures = { hosts, identities: hosts * perHost, caListeningMs, allDeliveredMs, caCpuMs, certsRoot: path.dirname(certsRoot) };
    process.stdout.write(`${figures.identities} identities on ${hosts} agents (certs under ${figures.certsRoot}): CA listening after ${caListeningMs} ms, all files written after ${allDeliveredMs} ms (target <= 10000) ${allDeliveredMs <= 10_000 ? 'MET' : 'NOT MET'}; CA CPU ${caCpuMs} ms\n`);
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
