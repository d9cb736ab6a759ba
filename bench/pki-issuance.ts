/**
 * In-process issuance on ONE core (one Node thread, synchronous): CertificateAuthority.signCsr =
 * parse + strict-validate + verify the CSR signature + sign the leaf, for EC P-256, over distinct
 * pre-generated CSRs. Printed beside
 *   (a) the OpenSSL bound on this machine: `openssl speed -seconds 3 ecdsap256`, one verify plus
 *       one sign per certificate, bound = 1 / (1/sign + 1/verify);
 *   (b) `cfssl serve` signing the same CSRs over HTTP (POST /api/v1/cfssl/sign), 64 keep-alive
 *       callers; cfssl may use every core, we use one.
 * Then where a certificate's time goes: key import, signature verify, leaf signing, the rest.
 *
 *   node dist/bench/pki-issuance.js [csrs=2000] [rounds=3] [--no-cfssl] [--no-openssl]
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, KeyObject, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CertificateAuthority, createSelfSignedRoot } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { createCsr, csrDer } from '../src/pki/csr';
import { children, readWhole } from '../src/pki/der';
import { spiffeId, workloadIdentity, WorkloadIdentity } from '../src/pki/identity';
import { generateKeyPair, publicKeyFromSpki, verifyWithSpki } from '../src/pki/keys';
import { nativeP256 } from '../src/common/native';
import { startCfssl } from './cfssl';
import { cpuMicros } from './grpc-proc';

export const TARGET_CERTS_PER_SEC = 5_000;

export interface PkiIssuanceFigures {
  certsPerSec: number;
  certsPerCpuSec: number;
  openssl?: { signPerSec: number; verifyPerSec: number; boundPerSec: number };
  cfssl?: { certsPerSec: number; cpuMicrosPerCert: number };
  phasesMicros: { keyImport: number; verify: number; verifyUsed: number; issue: number; rest: number; total: number };
  loadavg: number[];
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Sign and verify rates of OpenSSL's own ECDSA P-256, from `openssl speed`. */
export function opensslSpeed(seconds = 3): { signPerSec: number; verifyPerSec: number; boundPerSec: number } {
  const out = execFileSync('openssl', ['speed', '-seconds', String(seconds), 'ecdsap256'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const m = /256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`cannot read openssl speed output:\n${out}`);
  const signPerSec = Number(m[1]);
  const verifyPerSec = Number(m[2]);
  return { signPerSec, verifyPerSec, boundPerSec: 1 / (1 / signPerSec + 1 / verifyPerSec) };
}

/** `cfssl serve` with our root as its CA, signing `csrs` over HTTP with `callers` keep-alive callers. */
export async function cfsslSign(dir: string, caCertPem: string, caKeyPem: string, csrs: string[], requests: number, callers = 64): Promise<{ certsPerSec: number; cpuMicrosPerCert: number }> {
  const cfssl = await startCfssl(dir, caCertPem, caKeyPem, callers, csrs[0]);
  const drive = async (n: number) => {
    let next = 0;
    await Promise.all(Array.from({ length: callers }, async () => {
      while (next < n) await cfssl.sign(csrs[next++ % csrs.length]);
    }));
  };
  try {
    await drive(Math.min(500, requests)); // warm-up: connections, Go's scheduler
    const cpu0 = cpuMicros(cfssl.pid);
    const t0 = performance.now();
    await drive(requests);
    const ms = performance.now() - t0;
    return { certsPerSec: (requests / ms) * 1000, cpuMicrosPerCert: (cpuMicros(cfssl.pid) - cpu0) / requests };
  } finally {
    cfssl.stop();
  }
}

/** Runs fn(i) for every i, `rounds` times; the best round in certs/s (wall) and certs per CPU-second. */
function timeLoop(n: number, rounds: number, fn: (i: number) => void): { perSec: number; perCpuSec: number; microsEach: number } {
  let best = { perSec: 0, perCpuSec: 0, microsEach: Infinity };
  for (let r = 0; r < rounds; r++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn(i);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const perSec = (n / ms) * 1000;
    if (perSec > best.perSec) best = { perSec, perCpuSec: (n / (cpu.user + cpu.system)) * 1e6, microsEach: (ms * 1000) / n };
  }
  return best;
}

export async function main(argv = process.argv.slice(2)): Promise<PkiIssuanceFigures> {
  const flags = new Set(argv.filter((a) => a.startsWith('--')));
  const [nArg, roundsArg] = argv.filter((a) => !a.startsWith('--'));
  const n = Number(nArg ?? 2000);
  const rounds = Number(roundsArg ?? 3);
  const loadStart = os.loadavg();

  const secret = createSelfSignedRoot(DEFAULT_CA_CONFIG);
  const ca = CertificateAuthority.fromSecret(secret, DEFAULT_CA_CONFIG);
  const ids: WorkloadIdentity[] = Array.from({ length: n }, (_, i) => workloadIdentity('cluster.local', `ns-${i % 100}`, `sa-${i}`));
  const csrs = ids.map((id) => createCsr({ key: generateKeyPair('ec-p256').privateKey, uris: [spiffeId(id)] }));
  // The pieces of each CSR, for the phase breakdown.
  const parts = csrs.map((pem) => {
    const [info, , sig] = children(readWhole(csrDer(pem), 'CSR'));
    return { info: info.raw, spki: children(info)[2].raw, sig: sig.content.subarray(1) };
  });

  // Warm-up (JIT), then the figure: the whole signCsr, as the gRPC handler calls it.
  for (let i = 0; i < Math.min(300, n); i++) ca.signCsr(csrs[i], ids[i]);
  const full = timeLoop(n, rounds, (i) => ca.signCsr(csrs[i], ids[i]));

  // Where the time goes: each step alone, on fresh key objects as in signCsr.
  let keys: KeyObject[] = [];
  const keyImport = timeLoop(n, rounds, (i) => (keys[i] = publicKeyFromSpki(parts[i].spki)));
  const verifyFresh = timeLoop(n, 1, (i) => {
    if (!verify('sha256', parts[i].info, keys[i], parts[i].sig)) throw new Error('CSR signature did not verify');
  });
  const verifyAgain = timeLoop(n, 1, (i) => verify('sha256', parts[i].info, keys[i], parts[i].sig));
  const now = new Date();
  const issue = timeLoop(n, rounds, (i) => ca.issue(parts[i].spki, spiffeId(ids[i]), 3_600_000, now));
  // The path signCsr takes: the native verifier when built, else node:crypto as above.
  const verifyUsed = timeLoop(n, rounds, (i) => {
    if (!verifyWithSpki(parts[i].spki, 'sha256', parts[i].info, parts[i].sig)) throw new Error('CSR signature did not verify');
  });
  const derImport = timeLoop(Math.min(n, 500), 1, (i) => createPublicKey({ key: parts[i].spki, format: 'der', type: 'spki' }));
  keys = [];
  const phases = {
    keyImport: keyImport.microsEach,
    verify: verifyFresh.microsEach,
    issue: issue.microsEach,
    total: full.microsEach,
    verifyUsed: verifyUsed.microsEach,
    rest: full.microsEach - verifyUsed.microsEach - issue.microsEach,
  };

  const figures: PkiIssuanceFigures = { certsPerSec: full.perSec, certsPerCpuSec: full.perCpuSec, phasesMicros: phases, loadavg: [] };
  if (!flags.has('--no-openssl')) figures.openssl = opensslSpeed(3);
  if (!flags.has('--no-cfssl')) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-bench-pki-'));
    try {
      figures.cfssl = await cfsslSign(dir, secret.caCertPem, secret.caKeyPem, csrs, Math.max(n, 3000));
    } catch (err) {
      process.stdout.write(`cfssl: not measured (${(err as Error).message.split('\n')[0]})\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  figures.loadavg = os.loadavg();

  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`EC P-256 issuance, ${fmt(n)} distinct CSRs, best of ${rounds} rounds, one Node thread (node ${process.version}, ${process.versions.openssl})`);
  out(`load average at start ${loadStart.map((l) => l.toFixed(2)).join(' ')}, at end ${figures.loadavg.map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);
  const verdict = full.perSec >= TARGET_CERTS_PER_SEC ? 'PASS' : 'FAIL';
  out(`  citadel ca.signCsr (parse+validate+verify+sign)  ${fmt(full.perSec).padStart(6)} certs/s (target >= ${fmt(TARGET_CERTS_PER_SEC)}): ${verdict}`);
  out(`    per CPU-second of this process                 ${fmt(full.perCpuSec).padStart(6)} certs (CPU of all this process's threads, V8 GC/JIT included)`);
  if (verdict === 'FAIL') out(`    gap: ${fmt(TARGET_CERTS_PER_SEC - full.perSec)} certs/s (${((TARGET_CERTS_PER_SEC / full.perSec - 1) * 100).toFixed(0)}% more needed)`);
  if (figures.openssl) {
    const o = figures.openssl;
    out(`  OpenSSL bound (openssl speed: sign ${fmt(o.signPerSec)}/s, verify ${fmt(o.verifyPerSec)}/s) ${fmt(o.boundPerSec).padStart(6)} certs/s; citadel/bound = ${(full.perSec / o.boundPerSec).toFixed(2)} (target ~0.5)`);
  }
  if (figures.cfssl) {
    const c = figures.cfssl;
    out(`  cfssl serve over HTTP, 64 callers, all cores     ${fmt(c.certsPerSec).padStart(6)} certs/s, ${fmt(c.cpuMicrosPerCert)} µs cfssl CPU/cert; citadel/cfssl = ${(full.perSec / c.certsPerSec).toFixed(2)} (wall), ${(c.cpuMicrosPerCert / full.microsEach).toFixed(2)} (CPU per cert)`);
  }
  out(`  where a certificate's ${phases.total.toFixed(0)} µs go:`);
  const path_ = nativeP256 ? 'native addon' : 'node:crypto (addon not built)';
  out(`    CSR signature verify (${path_})  ${phases.verifyUsed.toFixed(0).padStart(5)} µs`);
  out(`    leaf DER encode + ECDSA sign (${nativeP256 ? 'native' : 'node:crypto'}) ${phases.issue.toFixed(0).padStart(5)} µs`);
  out(`    PEM/DER parse, strict checks     ${phases.rest.toFixed(0).padStart(5)} µs   (the remainder; each step is timed apart, so under load this is only rough)`);
  out(`  without the addon, node:crypto would spend: key import ${phases.keyImport.toFixed(0)} µs (JWK; DER SPKI ${derImport.microsEach.toFixed(0)} µs) + verify ${phases.verify.toFixed(0)} µs (same key again: ${verifyAgain.microsEach.toFixed(0)} µs)`);
  return figures;
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
