/**
 * The CA's gRPC server as a process of its own, so that /proc/<pid>/stat accounts its CPU alone.
 * Prints one JSON line `{"port":N,"pid":P}` on stdout when it listens.
 *
 *   node dist/bench/grpc-ca-process.js <store-dir> [hosts=0] [identities-per-host=0]
 *   node dist/bench/grpc-ca-process.js <store-dir> echo
 *
 * `echo` serves CreateCertificate with one canned certificate chain through the same transport,
 * TLS server certificate and client-certificate check, but no PKI: the floor that node:http2 and
 * TLS set under every call.
 * With hosts > 0 the Marathon view places identities ns<h>/sa<i> on hosts host-<h>, as the
 * Marathon client would after its first listing.
 */
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../src/ca/config';
import { createLogger } from '../src/common/log';
import { MarathonView } from '../src/marathon/view';
import type { Workload } from '../src/marathon/workload';
import { IstioCertificateService } from '../src/api/ca-api';
import { startCaGrpcServer } from '../src/server/grpc-server';
import { GrpcError, GrpcServer, status } from '../src/api/grpc/server';
import { ServerCertificate } from '../src/server/server-certificate';
import { workloadIdentity } from '../src/pki/identity';
import { FileStore } from '../src/store/file-store';

export function benchWorkloads(hosts: number, perHost: number): Workload[] {
  const out: Workload[] = [];
  for (let h = 0; h < hosts; h++) {
    for (let i = 0; i < perHost; i++) {
      out.push({ kind: 'app', id: `/ns${h}/app${i}`, namespace: `ns${h}`, serviceAccount: `sa${i}`, instances: [{ id: `t${h}.${i}`, host: `host-${h}`, state: 'TASK_RUNNING' }] });
    }
  }
  return out;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const [dir, hosts = '0', perHost = '0'] = argv;
  const store = await FileStore.open(dir);
  const ca = await CertificateAuthority.open(store, DEFAULT_CA_CONFIG);
  if (hosts === 'echo') return startEcho(ca);
  const view = new MarathonView();
  if (Number(hosts) > 0) view.replaceAll(benchWorkloads(Number(hosts), Number(perHost)));
  const server = await startCaGrpcServer({
    ca, store, placements: view, port: 0, host: '127.0.0.1', logger: createLogger({ level: process.env.CA_LOG_LEVEL === 'info' ? 'info' : 'warn' }), registry: new Registry(),
    rateLimit: { ratePerSecond: 0, burst: 0 },
  });
  process.stdout.write(JSON.stringify({ port: server.port, pid: process.pid }) + '\n');
  process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
}

async function startEcho(ca: CertificateAuthority): Promise<void> {
  const tls = new ServerCertificate(ca, [], createLogger({ level: 'warn' })).tls;
  const canned = ca.issueKeyCertBundle(workloadIdentity(ca.trustDomain, 'bench', 'echo'));
  const chain = [canned.certChainPem, canned.rootCertPem];
  const server = new GrpcServer({ tls });
  server.unary(IstioCertificateService.CreateCertificate, (_req, ctx) => {
    if (!ctx.tls?.authorized) throw new GrpcError(status.UNAUTHENTICATED, 'no client certificate');
    return { certChain: chain };
  });
  const port = await server.listen(0, '127.0.0.1');
  process.stdout.write(JSON.stringify({ port, pid: process.pid }) + '\n');
  process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
