/**
 * What the SDS tests with real Envoys share: a client and a server sidecar whose TLS comes only
 * from the node agent's sockets (the production TLS blocks of src/mesh/envoy/tls.ts, with the one
 * byte-identical sds_config, on the `sds-grpc` pipe cluster), a backend that records what it was
 * told about the caller, and `citadel agent` as a real process.
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { JsonObject } from '../../src/common/json';
import { EXTENSION, ROUTER_FILTER, socketAddress } from '../../src/mesh/envoy/filters';
import { downstreamMtls, upstreamTls } from '../../src/mesh/envoy/tls';
import { newJoinToken } from '../../src/server/join-token';
import { CitadelAgentProcess, startCitadelAgent } from '../helpers/citadel-agent';
import type { EnvoyCerts } from '../helpers/envoy';
import { sdsClusterFor } from '../helpers/sds-test-server';
import type { CaFixture } from '../server/fixtures';

export const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/server';
export const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';

/** The socket of an identity under the agent's --sds-dir. */
export const socketOf = (sdsDir: string, ns: string, sa: string) => path.join(sdsDir, ns, sa, 'socket');

function staticCluster(name: string, port: number, extra: JsonObject = {}): JsonObject {
  return { name, type: 'STATIC', connect_timeout: '2s', load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress('127.0.0.1', port) } }] }] }, ...extra };
}

function httpManager(statPrefix: string, cluster: string, extra: JsonObject = {}): JsonObject {
  return {
    name: EXTENSION.httpConnectionManager.name,
    typed_config: {
      '@type': EXTENSION.httpConnectionManager.type,
      stat_prefix: statPrefix,
      route_config: { name: statPrefix, virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }] },
      http_filters: [ROUTER_FILTER],
      ...extra,
    },
  };
}

/** The server sidecar: a STRICT mTLS listener in front of the backend, XFCC set from the client certificate. */
export function serverSidecar(sdsSocket: string, backendPort: number): JsonObject {
  return {
    node: { id: 'sidecar~127.0.0.1~server', cluster: '/shop/server' },
    static_resources: {
      clusters: [sdsClusterFor(sdsSocket) as JsonObject, staticCluster('inbound|backend', backendPort)],
      listeners: [
        {
          name: 'inbound',
          stat_prefix: 'inbound',
          address: socketAddress('127.0.0.1', 0),
          filter_chains: [{ transport_socket: downstreamMtls({ mode: 'sds' }, true), filters: [httpManager('inbound', 'inbound|backend', { forward_client_cert_details: 'SANITIZE_SET', set_current_client_cert_details: { uri: true } })] }],
        },
      ],
    },
  };
}

/**
 * The client sidecar: plaintext in on a local port, ISTIO_MUTUAL out to the server sidecar,
 * checking its SPIFFE ID. One request per upstream connection, so that every request makes a
 * handshake with the certificates of the moment (pooled connections keep their handshake).
 */
export function clientSidecar(sdsSocket: string, serverPort: number): JsonObject {
  const tls = upstreamTls({ kind: 'istio-mutual', subjectAltNames: [SERVER_ID], sni: 'outbound_.80_._.server.shop.svc.cluster.local' }, { mode: 'sds' }, false);
  return {
    node: { id: 'sidecar~127.0.0.1~client', cluster: '/shop/client' },
    static_resources: {
      clusters: [
        sdsClusterFor(sdsSocket) as JsonObject,
        staticCluster('outbound|80||server.shop', serverPort, {
          transport_socket: tls,
          typed_extension_protocol_options: {
            [EXTENSION.httpProtocolOptions.name]: {
              '@type': EXTENSION.httpProtocolOptions.type,
              common_http_protocol_options: { max_requests_per_connection: 1 },
              explicit_http_config: { http_protocol_options: {} },
            },
          },
        }),
      ],
      listeners: [{ name: 'outbound', stat_prefix: 'outbound', address: socketAddress('127.0.0.1', 0), filter_chains: [{ filters: [httpManager('outbound', 'outbound|80||server.shop')] }] }],
    },
  };
}

export interface SeenRequest {
  xfcc?: string;
}

/** An HTTP backend on 127.0.0.1 that records each request's x-forwarded-client-cert. */
export async function startBackend(): Promise<{ port: number; seen: SeenRequest[]; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const xfcc = req.headers['x-forwarded-client-cert'];
    seen.push(xfcc === undefined ? {} : { xfcc: String(xfcc) });
    res.end('ok');
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** The serial of the certificate Envoy's /certs shows for each TLS context, normalised (lower case, no leading zeros). */
export function envoySerials(certs: EnvoyCerts): string[] {
  return certs.certificates.flatMap((c) => c.cert_chain.slice(0, 1).map((x) => normalSerial(x.serial_number)));
}

export const normalSerial = (hex: string) => hex.toLowerCase().replace(/^0+(?=.)/, '');

/** A join token for `host` in the CA's store, and the CA's root in a file, for `citadel agent`. */
export async function agentCredentials(f: CaFixture, host: string, dir: string): Promise<{ token: string; rootFile: string }> {
  const t = newJoinToken(host, 600_000);
  await f.store.putJoinToken(t.record);
  const rootFile = path.join(dir, `root-${host}.pem`);
  writeFileSync(rootFile, f.ca.rootCertPem);
  return { token: t.token, rootFile };
}

export interface AgentCertificate {
  spiffeId: string;
  serial: string;
  notAfter: string;
}

/** What the agent's /debug/sds answers. */
export interface AgentSdsDebug {
  identities: Array<{ spiffeId: string; socket: string; streams: number; proxies: string[] }>;
  certificates: AgentCertificate[];
  lastNack?: { identity: string; message: string };
}

/** `citadel agent` running in SDS mode, with its monitoring port's answers. */
export interface SdsAgent extends CitadelAgentProcess {
  monitoringPort: number;
  /** When the process was spawned, and when it logged `agent running` (performance.now()). */
  spawnedAt: number;
  runningAt: number;
  debugSds(): Promise<AgentSdsDebug>;
  /** The serial of an identity's current certificate, as Envoy's /certs writes it. */
  serialOf(spiffeId: string): Promise<string | undefined>;
  metrics(): Promise<string>;
}

/**
 * `citadel agent` in SDS mode against the fixture's CA (no xDS sockets: these tests are about
 * SDS), once it logs `agent running`: node credential obtained, placement snapshot applied,
 * every socket listening.
 */
export async function startSdsAgent(f: CaFixture, o: { host: string; sdsDir: string; stateDir: string; rootFile: string; token?: string; extra?: string[] }): Promise<SdsAgent> {
  const spawnedAt = performance.now();
  const p = startCitadelAgent([
    '--ca-address', f.address, '--ca-root', o.rootFile, '--host', o.host, '--sds-dir', o.sdsDir, '--state-dir', o.stateDir, '--xds-address', 'none',
    ...(o.token ? ['--join-token', o.token] : []), ...(o.extra ?? []),
  ]);
  let running;
  try {
    running = await p.waitForLog((l) => l.msg === 'agent running', 20_000);
  } catch (err) {
    await p.stop('SIGKILL');
    throw err;
  }
  const runningAt = performance.now();
  const port = Number(running.monitoringPort);
  const get = async (urlPath: string) => (await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(5000) })).text();
  const debugSds = async () => JSON.parse(await get('/debug/sds')) as AgentSdsDebug;
  return {
    ...p,
    monitoringPort: port,
    spawnedAt,
    runningAt,
    debugSds,
    serialOf: async (id) => {
      const serial = (await debugSds()).certificates.find((c) => c.spiffeId === id)?.serial;
      return serial === undefined ? undefined : normalSerial(serial);
    },
    metrics: () => get('/metrics'),
  };
}

/** A steady stream of requests through `url` until stopped: each one's status (0 for a transport error). */
export function steadyRequests(url: string, parallel = 2): { stop(): Promise<Array<{ status: number; error?: string }>> } {
  const results: Array<{ status: number; error?: string }> = [];
  let running = true;
  const loops = Array.from({ length: parallel }, async () => {
    while (running) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
        const body = await res.text();
        results.push({ status: res.status, ...(res.status !== 200 && { error: body.slice(0, 200) }) });
      } catch (err) {
        results.push({ status: 0, error: String((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message) });
      }
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return results;
    },
  };
}
