/**
 * SDS mode (the architecture the project started from): a Unix socket per identity placed on
 * this node, `<sds-dir>/<ns>/<sa>/<socket>`, serving Envoy's Secret Discovery Service (v3, and v2
 * for Istio 1.1-era proxies). The per-identity directory is what gets mounted into that identity's
 * sidecar, so the path is the authorization: a socket serves its own identity only.
 *
 * Resources, as Istio and SPIRE name them: `default` and the identity's SPIFFE ID (certificate
 * and key), `ROOTCA` and the trust domain's ID `spiffe://<td>` (the trust bundle: the roots of
 * --ca-root, the CA's current one first). The protocol (ACK, NACK, nonces, added names) is src/xds's.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Counter, Gauge } from 'prom-client';
import type { DiscoveryRequest, DiscoveryResponse } from '../api/discovery';
import { BidiCall, GrpcError, GrpcServer, status, UnixListener } from '../api/grpc/server';
import { encodeTlsCertificateSecret, encodeValidationContextSecret, SdsApiVersion, sdsServices, SECRET_TYPE_URL } from '../api/sds';
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import { AccountRef, accountKey, spiffeId, workloadIdentity } from '../pki/identity';
import { DiscoveryStream, Resource, StreamError, Subscription } from '../xds/discovery-stream';
import type { TrustBundle } from './trust-bundle';
import type { WorkloadCert, WorkloadCertificates } from './workload-certs';

/** Istio's names for the certificate and the root; SPIRE's are the SPIFFE IDs. */
export const CERT_RESOURCE = 'default';
export const ROOT_RESOURCE = 'ROOTCA';

export interface SdsMetrics {
  streams: Gauge<'api'>;
  pushes: Counter<'api'>;
  nacks: Counter<'api'>;
}

export interface SdsServerOptions {
  /** `--sds-dir` (default /var/run/citadel/sds). */
  sdsDir: string;
  /** `--sds-socket-name` (default `socket`, today's Istio file name; `uds_path` for Istio 1.1 mounts). */
  socketName: string;
  /** `--sds-socket-mode` (default 0666, as Istio). */
  socketMode: number;
  /** The identity directory's mode (0750, as Istio) and owner (`--sds-dir-owner UID[:GID]`). */
  dirMode: number;
  dirOwner?: { uid: number; gid?: number };
  trustDomain: string;
  certs: WorkloadCertificates;
  /** What ROOTCA holds; a change of the CA's root pushes it on every stream. */
  trust: TrustBundle;
  logger: Logger;
  metrics?: SdsMetrics;
}

interface Socket {
  account: AccountRef;
  spiffeId: string;
  listener: UnixListener;
  dir: string;
  streams: Set<{ stream: DiscoveryStream; call: BidiCall<DiscoveryRequest, DiscoveryResponse> }>;
}

/** The last NACK a proxy sent, for status pages. */
export interface NackRecord {
  identity: string;
  api: SdsApiVersion;
  message: string;
  at: string;
}

export class SdsServer {
  private readonly server: GrpcServer;
  /** socket path -> the identity it serves. */
  private readonly byPath = new Map<string, Socket>();
  private readonly byAccount = new Map<string, Socket>();
  /** Encoded secrets per certificate (serial) and name: shared by every stream of the identity. */
  private readonly encoded = new WeakMap<WorkloadCert, Map<string, Resource>>();
  /** The trust bundle, encoded per name (ROOTCA, spiffe://<td>): shared by every stream of the node. */
  private encodedRoots: { pem: string; byName: Map<string, Resource> } = { pem: '', byName: new Map() };
  lastNack: NackRecord | undefined;

  constructor(private readonly opts: SdsServerOptions) {
    // One Envoy opens a stream per secret name and config, a sidecar with many clusters many.
    this.server = new GrpcServer({ maxConcurrentStreams: 10_000, maxMessageBytes: 4 * 1024 * 1024, onError: (err, p) => opts.logger.error('SDS request failed', { path: p, error: err.message }) });
    for (const svc of sdsServices()) {
      this.server.bidi(svc.StreamSecrets, (call) => this.stream(call, svc.version));
      this.server.unary(svc.FetchSecrets, (req, ctx) => this.fetch(req, ctx.localAddress, svc.version));
    }
    opts.certs.on('issued', (cert: WorkloadCert) => {
      const socket = this.byAccount.get(accountKey(cert.account));
      if (!socket) return;
      // New content only: the certificate names change, ROOTCA does not.
      for (const s of socket.streams) s.stream.refresh();
    });
    opts.trust.on('changed', () => {
      let streams = 0;
      for (const socket of this.byAccount.values()) {
        for (const s of socket.streams) s.stream.refresh();
        streams += socket.streams.size;
      }
      opts.logger.info('the CA signs under a new root; pushed ROOTCA (the new root first, then the other roots of --ca-root) on every stream', { streams });
    });
    opts.certs.on('expired', (account: AccountRef) => {
      const socket = this.byAccount.get(accountKey(account));
      if (!socket) return;
      for (const s of [...socket.streams]) {
        s.call.end(new GrpcError(status.UNAVAILABLE, `the certificate of ${socket.spiffeId} expired and the CA could not be reached to renew it; retry, a new one is sent once the CA answers`));
      }
      opts.logger.error('workload certificate expired with the CA unreachable; its SDS streams were ended', { identity: socket.spiffeId });
    });
  }

  /** The identities served, with their socket paths, open streams and the proxies (node IDs from each stream's first request) on them. */
  identities(): Array<{ account: AccountRef; spiffeId: string; socket: string; streams: number; proxies: string[] }> {
    return [...this.byAccount.values()].map((s) => ({
      account: s.account, spiffeId: s.spiffeId, socket: s.listener.path, streams: s.streams.size,
      proxies: [...new Set([...s.streams].flatMap((e) => (e.stream.node ? [e.stream.node.id] : [])))].sort(),
    }));
  }

  /** The identity arrived on the node: its directory and socket appear. */
  async addIdentity(account: AccountRef): Promise<void> {
    const key = accountKey(account);
    if (this.byAccount.has(key)) return;
    const dir = path.join(this.opts.sdsDir, account.namespace, account.serviceAccount);
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, this.opts.dirMode);
    if (this.opts.dirOwner) fs.chownSync(dir, this.opts.dirOwner.uid, this.opts.dirOwner.gid ?? -1);
    const socketPath = path.join(dir, this.opts.socketName);
    const listener = await this.server.listenUnix(socketPath, this.opts.socketMode); // a stale socket file is removed first
    if (this.opts.dirOwner) fs.chownSync(socketPath, this.opts.dirOwner.uid, this.opts.dirOwner.gid ?? -1);
    const socket: Socket = { account, spiffeId: spiffeId(workloadIdentity(this.opts.trustDomain, account.namespace, account.serviceAccount)), listener, dir, streams: new Set() };
    this.byPath.set(socketPath, socket);
    this.byAccount.set(key, socket);
    this.opts.logger.info('serving SDS for an identity placed on this node', { identity: socket.spiffeId, socket: socketPath });
    void this.opts.certs.ensure(account).catch(() => undefined); // the first stream finds it ready
  }

  /** The identity left the node: its streams end, its socket and directory go, its key is forgotten. */
  async removeIdentity(account: AccountRef): Promise<void> {
    const socket = this.byAccount.get(accountKey(account));
    if (!socket) return;
    this.byAccount.delete(accountKey(account));
    this.byPath.delete(socket.listener.path);
    for (const s of [...socket.streams]) s.call.end(new GrpcError(status.UNAVAILABLE, `${socket.spiffeId} left this node`));
    await socket.listener.close();
    this.opts.certs.release(account);
    removeEmptyDirs(socket.dir, this.opts.sdsDir);
    this.opts.logger.info('identity left this node; its SDS socket is gone', { identity: socket.spiffeId });
  }

  async close(): Promise<void> {
    for (const s of [...this.byAccount.values()]) await this.removeIdentity(s.account);
    await this.server.close();
  }

  private socketOf(localAddress: string): Socket {
    const socket = this.byPath.get(localAddress);
    if (!socket) throw new GrpcError(status.UNAVAILABLE, 'this socket no longer serves an identity');
    return socket;
  }

  private stream(call: BidiCall<DiscoveryRequest, DiscoveryResponse>, api: SdsApiVersion): void {
    const socket = this.socketOf(call.ctx.localAddress);
    const labels = { api };
    const entry = {
      call,
      stream: new DiscoveryStream({
        source: { resources: (typeUrl, sub, stream) => this.resources(socket, api, typeUrl, sub, stream) },
        send: (r) => {
          call.write(r);
          this.opts.metrics?.pushes.inc(labels);
        },
        isWildcardType: () => true, // an empty name list means both resources (SPIRE)
        onNack: (_t, message) => {
          this.opts.metrics?.nacks.inc(labels);
          this.lastNack = { identity: socket.spiffeId, api, message, at: new Date().toISOString() };
          this.opts.logger.warn('the proxy refused a secret (NACK); not sending it again', { identity: socket.spiffeId, error: message.slice(0, 500) });
        },
      }),
    };
    socket.streams.add(entry);
    this.opts.metrics?.streams.inc(labels);
    call.onClose(() => {
      socket.streams.delete(entry);
      this.opts.metrics?.streams.dec(labels);
    });
    call.onMessage((req) => {
      try {
        entry.stream.receive(req);
      } catch (err) {
        call.end(err instanceof StreamError ? new GrpcError(err.code, err.message) : new GrpcError(status.INTERNAL, errorMessage(err)));
      }
    });
    // A client that half-closes sends no more requests: end the call (OK), or it stays open, pushed to and never ACKed.
    call.onEnd(() => call.end());
  }

  private async fetch(req: DiscoveryRequest, localAddress: string, api: SdsApiVersion): Promise<DiscoveryResponse> {
    const socket = this.socketOf(localAddress);
    const names = req.resourceNames.length ? req.resourceNames : [CERT_RESOURCE, ROOT_RESOURCE];
    const wanted: Subscription = { wildcard: false, names: new Set(names) };
    let resources: ReadonlyMap<string, Resource> | undefined;
    try {
      await this.opts.certs.ensure(socket.account);
      resources = this.resources(socket, api, req.typeUrl || SECRET_TYPE_URL[api], wanted);
    } catch (err) {
      if (err instanceof StreamError) throw new GrpcError(err.code, err.message);
      throw err;
    }
    if (!resources) throw new GrpcError(status.UNAVAILABLE, `no valid certificate for ${socket.spiffeId} yet; retry`);
    this.opts.metrics?.pushes.inc({ api });
    return { versionInfo: [...resources.values()].map((r) => r.version).join(','), resources: [...resources.values()], typeUrl: SECRET_TYPE_URL[api], nonce: '' };
  }

  /** The secrets a request may have on this socket, or undefined while the certificate is not there yet. */
  private resources(socket: Socket, api: SdsApiVersion, typeUrl: string, sub: Subscription, stream?: DiscoveryStream): ReadonlyMap<string, Resource> | undefined {
    if (typeUrl !== SECRET_TYPE_URL[api]) throw new StreamError(status.INVALID_ARGUMENT, `type_url ${typeUrl} is not served here; SDS ${api} serves ${SECRET_TYPE_URL[api]}`);
    const trustDomainId = `spiffe://${this.opts.trustDomain}`;
    const names = sub.wildcard ? [CERT_RESOURCE, ROOT_RESOURCE] : [...sub.names];
    for (const n of names) {
      if (n !== CERT_RESOURCE && n !== ROOT_RESOURCE && n !== socket.spiffeId && n !== trustDomainId) {
        throw new StreamError(status.INVALID_ARGUMENT, `resource "${n}" is not served on this socket: it serves ${socket.spiffeId} as ${CERT_RESOURCE} or ${socket.spiffeId}, and its root as ${ROOT_RESOURCE} or ${trustDomainId}`);
      }
    }
    const cert = this.opts.certs.current(socket.account);
    if (!cert) {
      if (stream) void this.opts.certs.ensure(socket.account).then(() => stream.refresh(), () => undefined);
      return undefined;
    }
    let cache = this.encoded.get(cert);
    if (!cache) this.encoded.set(cert, (cache = new Map()));
    const bundle = this.opts.trust.pem;
    if (this.encodedRoots.pem !== bundle) this.encodedRoots = { pem: bundle, byName: new Map() };
    const out = new Map<string, Resource>();
    for (const n of names) {
      const isRoot = n === ROOT_RESOURCE || n === trustDomainId;
      const byName = isRoot ? this.encodedRoots.byName : cache;
      let r = byName.get(n);
      if (!r) {
        r = isRoot
          ? { name: n, version: hash(bundle), value: encodeValidationContextSecret(n, bundle) }
          : { name: n, version: cert.serialHex, value: encodeTlsCertificateSecret(n, cert.certChainPem, cert.keyPem) };
        byName.set(n, r);
      }
      out.set(n, r);
    }
    return out;
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** Removes `dir` and its parents up to (not including) `top` while they are empty. */
function removeEmptyDirs(dir: string, top: string): void {
  for (let d = dir; d.startsWith(top) && d !== top; d = path.dirname(d)) {
    try {
      fs.rmdirSync(d);
    } catch {
      return; // not empty (another identity of the namespace), or gone
    }
  }
}
