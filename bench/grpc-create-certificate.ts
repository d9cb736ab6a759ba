/**
 * CreateCertificate over gRPC with mutual TLS, 64 concurrent callers, EC P-256 CSRs, beside
 * `cfssl serve` signing the same CSRs over HTTP with 64 keep-alive callers, in the same run.
 * On 2 cores a Node load generator saturates before either server, so the figure that matters is
 * each server's own CPU time per certificate (utime+stime from /proc/<pid>/stat), with certs/s.
 *
 *   node dist/bench/grpc-create-certificate.js [requests-per-caller=150] [callers=64]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaClient } from '../src/agent/ca-client';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { createCsr } from '../src/pki/csr';
import { spiffeId, workloadIdentity } from '../src/pki/identity';
import { generateKeyPair } from '../src/pki/keys';
import { FileStore } from '../src/store/file-store';
import { startCfssl } from './cfssl';
import { cpuMicros, startCaProcess } from './grpc-proc';

export interface ServerFigures {
  server: string;
  certs: number;
  wallMs: number;
  certsPerSec: number;
  cpuMicrosPerCert: number;
}

async function drive(callers: number, perCaller: number, call: (caller: number) => Promise<void>, pid: number): Promise<Omit<ServerFigures, 'server'>> {
  const cpu0 = cpuMicros(pid);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: callers }, async (_, c) => {
    for (let i = 0; i < perCaller; i++) await call(c);
  }));
  const wallMs = performance.now() - t0;
  const cpu = cpuMicros(pid) - cpu0;
  const certs = callers * perCaller;
  return { certs, wallMs: Math.round(wallMs), certsPerSec: Math.round((certs / wallMs) * 1000), cpuMicrosPerCert: Math.round(cpu / certs) };
}

async function benchGrpc(dir: string, ca: CertificateAuthority, csrs: string[], ids: string[], perCaller: number, echo = false): Promise<ServerFigures> {
  const proc = await startCaProcess(path.join(dir, 'store'), echo ? 'echo' : 0);
  const clients = ids.map((_, i) => {
    const b = ca.issueKeyCertBundle(workloadIdentity('cluster.local', 'bench', `caller-${i}`));
    return new CaClient({ address: `127.0.0.1:${proc.port}`, rootCertPem: ca.rootCertPem, keyPem: b.keyPem, certChainPem: b.certChainPem });
  });
  try {
    const call = async (c: number) => {
      const chain = await clients[c].createCertificate(csrs[c], 3600);
      if (chain.length !== 2) throw new Error('unexpected chain');
    };
    await drive(clients.length, 20, call, proc.pid); // warm-up: connections, JIT
    const server = echo ? 'floor: the same transport, canned answer, no PKI' : 'citadel gRPC CreateCertificate (mTLS)';
    return { server, ...(await drive(clients.length, perCaller, call, proc.pid)) };
  } finally {
    for (const c of clients) c.close();
    await proc.stop();
  }
}

async function benchCfssl(dir: string, ca: CertificateAuthority, caKeyPem: string, csrs: string[], perCaller: number): Promise<ServerFigures> {
  const cfssl = await startCfssl(dir, ca.rootCertPem, caKeyPem, csrs.length, csrs[0]);
  try {
    const call = (c: number) => cfssl.sign(csrs[c]);
    await drive(csrs.length, 20, call, cfssl.pid);
    return { server: 'cfssl serve /api/v1/cfssl/sign (HTTP keep-alive)', ...(await drive(csrs.length, perCaller, call, cfssl.pid)) };
  } finally {
    cfssl.stop();
  }
}

export async function main(argv = process.argv.slice(2)): Promise<ServerFigures[]> {
  const perCaller = Number(argv[0] ?? 150);
  const callers = Number(argv[1] ?? 64);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-grpc-'));
  try {
    const store = await FileStore.open(path.join(dir, 'store'));
    const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
    const caKeyPem = (await store.getCaSecret())!.caKeyPem;
    const ids = Array.from({ length: callers }, (_, i) => spiffeId(workloadIdentity('cluster.local', 'bench', `caller-${i}`)));
    const csrs = ids.map((id) => createCsr({ key: generateKeyPair('ec-p256').privateKey, uris: [id] }));
    const results = [await benchGrpc(dir, ca, csrs, ids, perCaller), await benchCfssl(dir, ca, caKeyPem, csrs, perCaller), await benchGrpc(dir, ca, csrs, ids, perCaller, true)];
    const [g, c, floor] = results;
    for (const r of results) {
      process.stdout.write(`${r.server.padEnd(48)} ${String(r.certs).padStart(6)} certs  ${String(r.certsPerSec).padStart(6)} certs/s  ${String(r.cpuMicrosPerCert).padStart(5)} µs server CPU/cert\n`);
    }
    const ratio = g.cpuMicrosPerCert / c.cpuMicrosPerCert;
    process.stdout.write(`server CPU per certificate, citadel/cfssl: ${ratio.toFixed(2)} (target <= 0.67) ${ratio <= 2 / 3 ? 'MET' : 'NOT MET'}\n`);
    process.stdout.write(`of citadel's ${g.cpuMicrosPerCert} µs, node:http2 + TLS + gRPC framing take ${floor.cpuMicrosPerCert} µs (${((floor.cpuMicrosPerCert / c.cpuMicrosPerCert) * 100).toFixed(0)}% of cfssl's whole cost) and signing the rest, ${g.cpuMicrosPerCert - floor.cpuMicrosPerCert} µs\n`);
    await store.close();
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
