/**
 * The per-identity xDS socket, `<sds-dir>/<ns>/<sa>/xds` beside the SDS socket, as istio-agent
 * proxies xDS since Istio 1.8: a sidecar (or a proxyless gRPC service, whose xDS channel takes only
 * insecure credentials) speaks plaintext gRPC on the socket, and the agent forwards each stream to
 * `citadel server --xds-port` over mTLS with the node credential, naming the identity whose socket
 * it came in on. The server answers only for identities placed on this node. Messages pass through
 * as bytes: the agent does not read them.
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/grpc-js';
import { xdsStreamMethods } from '../api/discovery-services';
import { BidiCall, GrpcError, GrpcServer, status, UnixListener } from '../api/grpc/server';
import type { Logger } from '../common/log';
import { AccountRef, accountKey, spiffeId, workloadIdentity } from '../pki/identity';
import type { NodeCredential, NodeCredentials } from './node-credential';

/** The header the server reads the proxied identity from (server/xds-server.ts). */
const IDENTITY_HEADER = 'x-citadel-identity';
const XDS_SERVER_NAME = 'istiod';

const passthrough = (b: Buffer) => b;

export interface XdsProxyOptions {
  /** `citadel server --xds-port` address, host:port. */
  xdsAddress: string;
  caRootPem: string;
  credentials: NodeCredentials;
  trustDomain: string;
  socketName?: string;
  socketMode: number;
  dirOwner?: { uid: number; gid?: number };
  logger: Logger;
}

export class XdsProxy {
  private readonly server = new GrpcServer({ maxMessageBytes: 16 * 1024 * 1024 });
  private readonly sockets = new Map<string, { account: AccountRef; spiffeId: string; listener: UnixListener }>();
  private readonly byPath = new Map<string, string>();
  private upstream: { credential: NodeCredential; client: grpc.Client } | undefined;

  constructor(private readonly opts: XdsProxyOptions) {
    for (const { method } of xdsStreamMethods()) {
      const raw: MethodDefinition<Buffer, Buffer> = { ...method, requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough };
      this.server.bidi(raw, (call) => this.forward(call, raw.path));
    }
  }

  /** Listens on `<dir>/xds` for the identity (its directory exists: the SDS server made it). */
  async addIdentity(account: AccountRef, dir: string): Promise<void> {
    const key = accountKey(account);
    if (this.sockets.has(key)) return;
    const socketPath = `${dir}/${this.opts.socketName ?? 'xds'}`;
    const listener = await this.server.listenUnix(socketPath, this.opts.socketMode);
    if (this.opts.dirOwner) fs.chownSync(socketPath, this.opts.dirOwner.uid, this.opts.dirOwner.gid ?? -1);
    this.sockets.set(key, { account, spiffeId: spiffeId(workloadIdentity(this.opts.trustDomain, account.namespace, account.serviceAccount)), listener });
    this.byPath.set(socketPath, key);
  }

  async removeIdentity(account: AccountRef): Promise<void> {
    const s = this.sockets.get(accountKey(account));
    if (!s) return;
    this.sockets.delete(accountKey(account));
    this.byPath.delete(s.listener.path);
    await s.listener.close(); // its proxied streams end with their connections
  }

  async close(): Promise<void> {
    for (const s of [...this.sockets.values()]) await this.removeIdentity(s.account);
    await this.server.close();
    this.upstream?.client.close();
  }

  /** One channel to the server per node credential (renewed: new streams use the new one). */
  private client(): grpc.Client {
    const c = this.opts.credentials.current;
    if (!c) throw new GrpcError(status.UNAVAILABLE, 'the node has no credential yet');
    if (this.upstream?.credential !== c) {
      const old = this.upstream?.client;
      if (old) setTimeout(() => old.close(), 60_000).unref();
      const creds = grpc.credentials.createSsl(Buffer.from(this.opts.caRootPem), Buffer.from(c.keyPem), Buffer.from(c.certChainPem));
      this.upstream = {
        credential: c,
        client: new grpc.Client(this.opts.xdsAddress, creds, {
          'grpc.ssl_target_name_override': XDS_SERVER_NAME,
          'grpc.default_authority': XDS_SERVER_NAME,
          'grpc.keepalive_time_ms': 30_000,
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
        }),
      };
    }
    return this.upstream.client;
  }

  private forward(call: BidiCall<Buffer, Buffer>, path: string): void {
    const key = this.byPath.get(call.ctx.localAddress);
    const socket = key ? this.sockets.get(key) : undefined;
    if (!socket) return call.end(new GrpcError(status.UNAVAILABLE, 'this socket no longer serves an identity'));
    let up: grpc.ClientDuplexStream<Buffer, Buffer>;
    try {
      const md = new grpc.Metadata();
      md.set(IDENTITY_HEADER, socket.spiffeId);
      up = this.client().makeBidiStreamRequest(path, passthrough, passthrough, md, {});
    } catch (err) {
      return call.end(err instanceof GrpcError ? err : new GrpcError(status.UNAVAILABLE, (err as Error).message));
    }
    up.on('data', (m: Buffer) => call.write(m));
    up.on('status', (s: grpc.StatusObject) => call.end(s.code === status.OK ? undefined : new GrpcError(s.code, s.details)));
    up.on('error', () => undefined); // reported by 'status'
    call.onMessage((m) => up.write(m));
    call.onEnd(() => up.end());
    call.onClose(() => up.cancel());
  }
}
