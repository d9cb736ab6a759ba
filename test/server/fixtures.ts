/** A real CA with a real gRPC server on a free port, for the server and agent tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../src/ca/authority';
import { CaConfig, DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { silentLogger } from '../../src/common/log';
import { MarathonView } from '../../src/marathon/view';
import type { Workload } from '../../src/marathon/workload';
import { createCsr } from '../../src/pki/csr';
import { Identity, nodeIdentity, secretName, spiffeId, workloadIdentity } from '../../src/pki/identity';
import { generateKeyPair, privateKeyToPem } from '../../src/pki/keys';
import { CaClient } from '../../src/agent/ca-client';
import { CaGrpcServer, CaGrpcServerOptions, startCaGrpcServer } from '../../src/server/grpc-server';
import { RateLimitOptions } from '../../src/server/rate-limit';
import { FileStore } from '../../src/store/file-store';
import type { Store } from '../../src/store/store';

export const TD = 'cluster.local';

export interface CaFixture {
  dir: string;
  ca: CertificateAuthority;
  store: Store;
  view: MarathonView;
  registry: Registry;
  server: CaGrpcServer;
  address: string;
  close(): Promise<void>;
}

export interface CaFixtureOptions extends Pick<CaGrpcServerOptions, 'maxConcurrentStreams' | 'timeouts' | 'audit'> {
  rateLimit?: RateLimitOptions;
  config?: Partial<CaConfig>;
  dir?: string;
  port?: number;
  /** Placements made before the server listens (a CA restarted with what Marathon had all along). */
  view?: MarathonView;
}

export async function startCaFixture(opts: CaFixtureOptions = {}): Promise<CaFixture> {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'citadel-grpc-'));
  const store = await FileStore.open(path.join(dir, 'store'));
  const ca = await CertificateAuthority.open(store, { ...DEFAULT_CA_CONFIG, ...opts.config });
  const view = opts.view ?? new MarathonView();
  const registry = new Registry();
  const server = await startCaGrpcServer({
    ca, store, placements: view, port: opts.port ?? 0, host: '127.0.0.1', logger: silentLogger, registry,
    rateLimit: opts.rateLimit, maxConcurrentStreams: opts.maxConcurrentStreams, timeouts: opts.timeouts, audit: opts.audit,
  });
  return {
    dir, ca, store, view, registry, server,
    address: `127.0.0.1:${server.port}`,
    close: async () => {
      await server.close();
      await store.close();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A key and certificate for an identity, issued by the CA directly (what a caller presents). */
export function credentialFor(ca: CertificateAuthority, id: Identity, ttlMs?: number): { keyPem: string; certChainPem: string } {
  const b = ca.issueKeyCertBundle(id, ttlMs);
  return { keyPem: b.keyPem, certChainPem: b.certChainPem };
}

export function clientFor(f: CaFixture, cred?: { keyPem: string; certChainPem: string }, rootCertPem = f.ca.rootCertPem): CaClient {
  return new CaClient({ address: f.address, rootCertPem, keyPem: cred?.keyPem, certChainPem: cred?.certChainPem });
}

export function csrFor(id: string | string[], extra: Partial<Parameters<typeof createCsr>[0]> = {}): { csr: string; keyPem: string } {
  const key = generateKeyPair('ec-p256').privateKey;
  return { csr: createCsr({ key, uris: Array.isArray(id) ? id : [id], ...extra }), keyPem: privateKeyToPem(key) };
}

export const workload = (ns: string, sa: string) => workloadIdentity(TD, ns, sa);
export const node = (host: string) => nodeIdentity(TD, host);
export { spiffeId, secretName };

/** Places an app's tasks on hosts in the view (what the Marathon client does on an event). */
export function placeApp(view: MarathonView, id: string, ns: string, sa: string, hosts: string[], state = 'TASK_RUNNING'): void {
  const w: Workload = { kind: 'app', id, namespace: ns, serviceAccount: sa, instances: hosts.map((h, i) => ({ id: `${id.replace(/\//g, '_')}.${i}`, host: h, state })) };
  view.put('app', id, w);
}

export function removeApp(view: MarathonView, id: string): void {
  view.put('app', id, undefined);
}

/** Writes the Citadel secret istio.<sa> as the secret controller would. */
export async function putWorkloadSecret(f: { ca: CertificateAuthority; store: Store }, ns: string, sa: string, ttlMs?: number): Promise<void> {
  const id = workloadIdentity(f.ca.trustDomain, ns, sa);
  const b = f.ca.issueKeyCertBundle(id, ttlMs);
  await f.store.putSecret({
    namespace: ns,
    name: secretName(sa),
    certChainPem: b.certChainPem,
    keyPem: b.keyPem,
    rootCertPem: b.rootCertPem,
    metadata: {
      type: 'istio.io/key-and-cert', serviceAccount: sa, spiffeId: spiffeId(id), notBefore: b.notBefore.toISOString(),
      notAfter: b.notAfter.toISOString(), serialNumber: b.serialHex, updatedAt: new Date().toISOString(),
    },
  });
}
