/**
 * ADS clients of the `xds` benchmark, many in one process (bench/xds.ts forks a few of these so
 * the clients do not serialise on one event loop). Each is one sidecar as Envoy speaks to the
 * control plane: its own TLS connection with its identity's certificate, one ADS stream; CDS and
 * LDS by wildcard, EDS by the clusters CDS named, RDS by the route names in LDS; every response
 * ACKed by its version and nonce, the subscription changed when the names do. Resources are read
 * only as far as the protocol needs (names), and for the benchmark's checks (the endpoints of a
 * ClusterLoadAssignment, whether inbound listeners sniff for TLS).
 *
 * With `via: 'agent'` the clients come as the node agents forward sidecars' streams (the sds-mode
 * default, src/agent/xds-proxy.ts): one mTLS connection per Mesos agent with its node certificate,
 * one stream per sidecar on it naming the sidecar's identity in `x-citadel-identity`.
 *
 * IPC with the driver:
 *   <- {op: 'start', port, rootPem, credentials, clients, via, concurrency, extensions}
 *   -> {op: 'synced', index, at} per client, once all four types are ACKed; {op: 'error', index, message}
 *   <- {op: 'watch', watch}   -> {op: 'armed', id, affected}
 *   -> {op: 'done', id, acks, received}  once every affected client ACKed what the watch waits for
 *   <- {op: 'collect', id}    -> {op: 'done', ...} with what arrived so far (the driver's timeout)
 */
import * as http2 from 'node:http2';
import { discoveryCodec, encodeStruct, type DiscoveryRequest } from '../src/api/discovery';
import { xdsStreamMethods } from '../src/api/discovery-services';
import { frame, MessageReader } from '../src/api/grpc/framing';
import { readFields, Writer, WIRE, type FieldValue } from '../src/api/wire';
import { nodeId, nodeMetadata } from '../src/mesh/bootstrap/node';
import { TYPE_URL } from '../src/mesh/resources';
import { spiffeId, workloadIdentity } from '../src/pki/identity';
import { IDENTITY_HEADER } from '../src/server/xds-server';
import type { BenchProxy } from './xds-mesh';

export interface ClientCredential {
  keyPem: string;
  certChainPem: string;
}

/** How the sidecars reach the server: each with its own connection and workload certificate (files mode), or through their node's agent. */
export type Via = 'direct' | 'agent';

/** The credential a client connects with: its identity's, or its node's. */
export const credentialKey = (p: BenchProxy, via: Via) => (via === 'agent' ? `node/${p.host}` : `${p.namespace}/${p.serviceAccount}`);

export type Watch =
  /** EDS carrying this endpoint in any of these clusters, ACKed by every client subscribed to one of them. */
  | { id: number; kind: 'endpoint'; clusters: string[]; address: string; ports: number[] }
  /** LDS whose inbound listeners follow `mode` (PERMISSIVE sniffs with tls_inspector, STRICT does not), ACKed by every client. */
  | { id: number; kind: 'mode'; mode: 'STRICT' | 'PERMISSIVE' };

export type ClientCommand =
  | { op: 'start'; port: number; rootPem: string; credentials: Record<string, ClientCredential>; clients: BenchProxy[]; trustDomain: string; via: Via; concurrency: number; extensions: number }
  | { op: 'watch'; watch: Watch }
  | { op: 'collect'; id: number };

export type ClientReport =
  | { op: 'synced'; index: number; at: number }
  | { op: 'error'; index: number; message: string }
  | { op: 'armed'; id: number; affected: number }
  /** acks: when each affected client sent its ACK; received: responses of each type that arrived after arming, over all clients. */
  | { op: 'done'; id: number; affected: number; acks: number[]; received: Record<string, number>; complete: boolean };

const now = () => performance.timeOrigin + performance.now();
const ADS_PATH = xdsStreamMethods()[0].method.path;
const SHORT: Record<string, string> = { [TYPE_URL.cluster]: 'CDS', [TYPE_URL.endpoint]: 'EDS', [TYPE_URL.listener]: 'LDS', [TYPE_URL.route]: 'RDS' };
const TLS_INSPECTOR = Buffer.from('envoy.filters.listener.tls_inspector');
const HCM_TYPE = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const { LEN, VARINT } = WIRE;

// Field numbers of Envoy's v3 messages (envoy/config/...; bench/xds.ts checks them against the protos).
export const FIELDS = {
  cluster: { name: 1, type: 2, edsClusterConfig: 3, edsServiceName: 2, EDS: 3 },
  listener: { filterChains: 3, chainFilters: 3, filterTypedConfig: 4, anyTypeUrl: 1, anyValue: 2, hcmRds: 3, rdsRouteConfigName: 2 },
  assignment: { clusterName: 1, endpoints: 2, lbEndpoints: 2, endpoint: 1, address: 1, socketAddress: 1, socketAddressAddress: 2, portValue: 3 },
  node: { id: 1, cluster: 2, metadata: 3, userAgentName: 6, userAgentBuildVersion: 8, extensions: 9 },
};

function each(b: Buffer, field: number, on: (v: Buffer) => void): void {
  readFields(b, (f, w, v) => {
    if (f === field && w === LEN) on(v as Buffer);
  });
}

function str(b: Buffer, field: number): string {
  let out = '';
  readFields(b, (f, w, v) => {
    if (f === field && w === LEN) out = (v as Buffer).toString('utf8');
  });
  return out;
}

/** The ClusterLoadAssignment names a CDS response asks for: its EDS clusters' service names (or their own). */
export function edsNamesOf(clusters: Buffer[]): string[] {
  const F = FIELDS.cluster;
  const names: string[] = [];
  for (const c of clusters) {
    let name = '';
    let type = 0;
    let serviceName = '';
    readFields(c, (f, w, v: FieldValue) => {
      if (f === F.name && w === LEN) name = (v as Buffer).toString('utf8');
      else if (f === F.type && w === VARINT) type = v as number;
      else if (f === F.edsClusterConfig && w === LEN) serviceName = str(v as Buffer, F.edsServiceName);
    });
    if (type === F.EDS) names.push(serviceName || name);
  }
  return names.sort();
}

/** The RouteConfiguration names an LDS response asks for: each HttpConnectionManager's rds.route_config_name. */
export function routeNamesOf(listeners: Buffer[]): string[] {
  const F = FIELDS.listener;
  const names = new Set<string>();
  for (const l of listeners) {
    each(l, F.filterChains, (chain) =>
      each(chain, F.chainFilters, (filter) =>
        each(filter, F.filterTypedConfig, (any) => {
          if (!str(any, F.anyTypeUrl).endsWith(HCM_TYPE)) return;
          each(any, F.anyValue, (hcm) => each(hcm, F.hcmRds, (rds) => names.add(str(rds, F.rdsRouteConfigName))));
        }),
      ),
    );
  }
  return [...names].sort();
}

/** A ClusterLoadAssignment's name and its endpoints as `address:port`. */
export function hostsOf(assignment: Buffer): { cluster: string; hosts: Set<string> } {
  const F = FIELDS.assignment;
  const hosts = new Set<string>();
  const cluster = str(assignment, F.clusterName);
  each(assignment, F.endpoints, (locality) =>
    each(locality, F.lbEndpoints, (lb) =>
      each(lb, F.endpoint, (ep) =>
        each(ep, F.address, (addr) =>
          each(addr, F.socketAddress, (sa) => {
            let port = 0;
            readFields(sa, (f, w, v) => {
              if (f === F.portValue && w === VARINT) port = v as number;
            });
            hosts.add(`${str(sa, F.socketAddressAddress)}:${port}`);
          }),
        ),
      ),
    ),
  );
  return { cluster, hosts };
}

/**
 * The first request's node as an Envoy 1.40 sidecar sends it: id, cluster, the bootstrap's
 * metadata, user agent and build version; with `extensions` > 0 also that many
 * node.extensions entries (a real Envoy lists about 500, some 60 KB), which the server skips.
 */
function encodeNode(p: BenchProxy, trustDomain: string, extensions: number): Buffer {
  const identity = workloadIdentity(trustDomain, p.namespace, p.serviceAccount);
  const boot = { identity, marathonId: p.marathonId, certMode: 'sds' as const, capture: 'explicit' as const, generator: 'envoy' as const, instanceIp: p.instanceIp, instanceId: p.instanceId };
  const metadata = { ...nodeMetadata(boot), ISTIO_VERSION: '1.24.0', INSTANCE_IPS: p.instanceIp, POD_PORTS: '[{"name":"http-api","containerPort":8080},{"name":"grpc","containerPort":9090}]', LABELS: { app: p.marathonId.split('/').pop()!, team: 'bench' } };
  const F = FIELDS.node;
  const semver = new Writer().int(1, 1).int(2, 40).int(3, 0).finish();
  const w = new Writer()
    .bytes(F.id, nodeId(boot))
    .bytes(F.cluster, `${p.marathonId.split('/').pop()}.${p.namespace}`)
    .always(F.metadata, encodeStruct(metadata))
    .bytes(F.userAgentName, 'envoy')
    .always(F.userAgentBuildVersion, new Writer().always(1, semver).finish());
  for (let i = 0; i < extensions; i++) {
    const category = `envoy.filters.category${i % 40}`;
    w.always(F.extensions, new Writer().bytes(1, `envoy.extension.number.${i}.of.a.real.envoy.build`).bytes(2, category).always(4, new Writer().always(1, semver).finish()).bytes(6, `type.googleapis.com/envoy.extensions.example.v3.Config${i}`).finish());
  }
  return w.finish();
}

interface TypeState {
  version: string;
  nonce: string;
  names: string[];
  acked: boolean;
}

/** One sidecar's ADS stream. */
class AdsClient {
  private session: http2.ClientHttp2Session | undefined;
  private stream!: http2.ClientHttp2Stream;
  private readonly reader = new MessageReader(64 * 1024 * 1024);
  private readonly types = new Map<string, TypeState>();
  private ldsRequested = false;
  private syncedReported = false;
  /** Per armed watch: when this client ACKed what it waits for. */
  readonly hits = new Map<number, number>();

  constructor(
    readonly spec: BenchProxy,
    private readonly events: {
      synced(c: AdsClient): void;
      error(c: AdsClient, message: string): void;
      acked(c: AdsClient, typeUrl: string, resources: Buffer[]): void;
    },
  ) {}

  subscribed(typeUrl: string): readonly string[] {
    return this.types.get(typeUrl)?.names ?? [];
  }

  /** Opens the ADS stream on `session` (its own connection, or its node agent's); `headers` name a proxied identity. */
  connect(session: http2.ClientHttp2Session, headers: Record<string, string>, firstNode: Buffer): void {
    this.session = session;
    this.stream = session.request({ ':method': 'POST', ':path': ADS_PATH, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    this.stream.on('error', (err) => this.events.error(this, `stream: ${err.message}`));
    this.stream.on('trailers', (t) => this.events.error(this, `stream ended: grpc-status ${t['grpc-status']} ${decodeURIComponent(String(t['grpc-message'] ?? ''))}`));
    this.stream.on('response', (h) => {
      if (h['grpc-status'] !== undefined) this.events.error(this, `refused: grpc-status ${h['grpc-status']} ${decodeURIComponent(String(h['grpc-message'] ?? ''))}`);
    });
    this.stream.on('data', (chunk: Buffer) => {
      for (const m of this.reader.push(chunk)) this.onResponse(m);
    });
    // CDS first, by wildcard, with the node (Envoy: clusters, then listeners once clusters are warm).
    const first = new Writer().always(2, firstNode).bytes(4, TYPE_URL.cluster).finish();
    this.types.set(TYPE_URL.cluster, { version: '', nonce: '', names: [], acked: false });
    this.stream.write(frame(first));
  }

  close(): void {
    this.stream?.close();
    this.session?.destroy();
  }

  private send(r: Partial<DiscoveryRequest> & { typeUrl: string }): void {
    this.stream.write(frame(discoveryCodec.DiscoveryRequest.encode({ versionInfo: '', resourceNames: [], responseNonce: '', ...r })));
  }

  private onResponse(bytes: Buffer): void {
    const r = discoveryCodec.DiscoveryResponse.decode(bytes);
    const resources = r.resources.map((x) => x.value);
    const state = this.types.get(r.typeUrl);
    if (!state) return this.events.error(this, `a ${SHORT[r.typeUrl] ?? r.typeUrl} response nobody asked for`);
    state.version = r.versionInfo;
    state.nonce = r.nonce;
    const ack = () => {
      this.send({ typeUrl: r.typeUrl, versionInfo: state.version, responseNonce: state.nonce, resourceNames: state.names });
      state.acked = true;
      this.events.acked(this, r.typeUrl, resources);
    };
    if (r.typeUrl === TYPE_URL.cluster) {
      ack();
      this.resubscribe(TYPE_URL.endpoint, edsNamesOf(resources));
    } else if (r.typeUrl === TYPE_URL.listener) {
      ack();
      this.resubscribe(TYPE_URL.route, routeNamesOf(resources));
    } else {
      ack();
    }
    if (r.typeUrl === TYPE_URL.endpoint && !this.ldsRequested) {
      this.ldsRequested = true;
      this.types.set(TYPE_URL.listener, { version: '', nonce: '', names: [], acked: false });
      this.send({ typeUrl: TYPE_URL.listener });
    }
    if (!this.syncedReported && this.isSynced()) {
      this.syncedReported = true;
      this.events.synced(this);
    }
  }

  /** A new name list for a named type: a request with it, carrying the last version and nonce of that type. */
  private resubscribe(typeUrl: string, names: string[]): void {
    const s = this.types.get(typeUrl) ?? { version: '', nonce: '', names: [], acked: false };
    const requested = this.types.has(typeUrl);
    if (requested ? sameList(s.names, names) : names.length === 0) return;
    this.types.set(typeUrl, s);
    s.names = names;
    this.send({ typeUrl, versionInfo: s.version, responseNonce: s.nonce, resourceNames: names });
  }

  private isSynced(): boolean {
    const acked = (t: string) => this.types.get(t)?.acked === true;
    return acked(TYPE_URL.cluster) && acked(TYPE_URL.endpoint) && acked(TYPE_URL.listener) && (!this.types.has(TYPE_URL.route) || acked(TYPE_URL.route));
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

interface ArmedWatch {
  watch: Watch;
  affected: Set<AdsClient>;
  acks: number[];
  received: Record<string, number>;
  reported: boolean;
}

function run(): void {
  const clients: AdsClient[] = [];
  const watches = new Map<number, ArmedWatch>();
  const send = (r: ClientReport) => process.send!(r);

  const report = (w: ArmedWatch, complete: boolean) => {
    w.reported = true;
    watches.delete(w.watch.id);
    send({ op: 'done', id: w.watch.id, affected: w.affected.size, acks: w.acks, received: w.received, complete });
  };

  const matches = (w: Watch, typeUrl: string, resources: Buffer[]): boolean => {
    if (w.kind === 'endpoint') {
      if (typeUrl !== TYPE_URL.endpoint) return false;
      const wanted = new Set(w.ports.map((p) => `${w.address}:${p}`));
      return resources.some((r) => {
        const { cluster, hosts } = hostsOf(r);
        return w.clusters.includes(cluster) && [...hosts].some((h) => wanted.has(h));
      });
    }
    if (typeUrl !== TYPE_URL.listener) return false;
    const inbound = resources.filter((r) => r.includes('INBOUND') || r.includes('inbound|'));
    const sniffs = inbound.some((r) => r.includes(TLS_INSPECTOR));
    return inbound.length > 0 && sniffs === (w.mode === 'PERMISSIVE');
  };

  const events = {
    synced: (c: AdsClient) => send({ op: 'synced', index: c.spec.index, at: now() }),
    error: (c: AdsClient, message: string) => send({ op: 'error', index: c.spec.index, message }),
    acked: (c: AdsClient, typeUrl: string, resources: Buffer[]) => {
      if (watches.size === 0) return;
      const at = now();
      for (const w of watches.values()) {
        const short = SHORT[typeUrl] ?? typeUrl;
        w.received[short] = (w.received[short] ?? 0) + 1;
        if (!w.affected.has(c) || c.hits.has(w.watch.id) || !matches(w.watch, typeUrl, resources)) continue;
        c.hits.set(w.watch.id, at);
        w.acks.push(at);
        if (w.acks.length === w.affected.size) report(w, true);
      }
    },
  };

  process.on('message', (cmd: ClientCommand) => {
    if (cmd.op === 'start') {
      const sessions = new Map<string, http2.ClientHttp2Session>();
      const sessionFor = (key: string, credential: string, onError: (message: string) => void): http2.ClientHttp2Session => {
        let session = sessions.get(key);
        if (!session || session.destroyed) {
          const cred = cmd.credentials[credential];
          session = http2.connect(`https://127.0.0.1:${cmd.port}`, { ca: cmd.rootPem, key: cred.keyPem, cert: cred.certChainPem, servername: 'istiod' });
          session.on('error', (err) => onError(`connection: ${err.message}`));
          sessions.set(key, session);
        }
        return session;
      };
      let next = 0;
      let inFlight = 0;
      const startNext = () => {
        while (inFlight < cmd.concurrency && next < cmd.clients.length) {
          const spec = cmd.clients[next++];
          inFlight++;
          let released = false;
          const release = () => {
            if (released) return;
            released = true;
            inFlight--;
            startNext();
          };
          const c = new AdsClient(spec, {
            ...events,
            synced: (x) => {
              events.synced(x);
              release();
            },
            error: (x, m) => {
              events.error(x, m);
              release();
            },
          });
          clients.push(c);
          const key = credentialKey(spec, cmd.via);
          const session = sessionFor(cmd.via === 'agent' ? key : String(spec.index), key, (m) => events.error(c, m));
          const headers: Record<string, string> = cmd.via === 'agent' ? { [IDENTITY_HEADER]: spiffeId(workloadIdentity(cmd.trustDomain, spec.namespace, spec.serviceAccount)) } : {};
          c.connect(session, headers, encodeNode(spec, cmd.trustDomain, cmd.extensions));
        }
      };
      startNext();
    } else if (cmd.op === 'watch') {
      const w = cmd.watch;
      const affected = new Set<AdsClient>();
      for (const c of clients) {
        if (w.kind === 'mode' || c.subscribed(TYPE_URL.endpoint).some((n) => w.clusters.includes(n))) affected.add(c);
      }
      const armed: ArmedWatch = { watch: w, affected, acks: [], received: {}, reported: false };
      watches.set(w.id, armed);
      send({ op: 'armed', id: w.id, affected: affected.size });
      if (affected.size === 0) report(armed, true);
    } else if (cmd.op === 'collect') {
      const w = watches.get(cmd.id);
      if (w) report(w, false);
    }
  });
  process.on('disconnect', () => {
    for (const c of clients) c.close();
    process.exit(0);
  });
}

if (require.main === module) run();
