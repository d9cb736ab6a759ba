/** A gRPC client speaking xDS as Envoy does (ADS by default, or one per-type service), over mTLS, for the xDS server tests. */
import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../../src/api/discovery';
import { ReceivedDiscoveryResponse, xdsStreamMethods } from '../../src/api/discovery-services';
import { envoyProtoRoot } from '../../src/api/envoy-protos';
import type { MethodDefinition } from '@grpc/grpc-js';

export const ADS = xdsStreamMethods()[0].method;

/** The per-type service (StreamClusters, StreamEndpoints, ...) serving `typeUrl`. */
export function serviceFor(typeUrl: string): MethodDefinition<DiscoveryRequest, DiscoveryResponse> {
  const found = xdsStreamMethods().find((m) => m.typeUrl === typeUrl);
  if (!found) throw new Error(`no xDS service serves ${typeUrl}`);
  return found.method;
}

/** A value and its change listeners, as the server's mesh and policy sources are. */
export class Changing<T> {
  private listeners = new Set<() => void>();
  constructor(public value: T) {}
  set(v: T) {
    this.value = v;
    for (const l of this.listeners) l();
  }
  onChange(l: () => void) {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

/** An ADS stream as Envoy opens it: CDS and LDS wildcard, then EDS and RDS by name. */
export class AdsClient {
  private readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<DiscoveryRequest, ReceivedDiscoveryResponse>;
  private readonly queue: ReceivedDiscoveryResponse[] = [];
  private readonly waiters: Array<(r: ReceivedDiscoveryResponse) => void> = [];
  ended: Promise<grpc.StatusObject>;

  constructor(address: string, rootPem: string, cred: { keyPem: string; certChainPem: string }, headers: Record<string, string> = {}, method: MethodDefinition<DiscoveryRequest, DiscoveryResponse> = ADS) {
    const creds = grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(cred.keyPem), Buffer.from(cred.certChainPem));
    this.client = new grpc.Client(address, creds, { 'grpc.ssl_target_name_override': 'istiod', 'grpc.use_local_subchannel_pool': 1 });
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    this.call = this.client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize as unknown as (b: Buffer) => ReceivedDiscoveryResponse, md, {});
    this.call.on('data', (r: ReceivedDiscoveryResponse) => {
      const w = this.waiters.shift();
      if (w) w(r);
      else this.queue.push(r);
    });
    this.ended = new Promise((resolve) => this.call.on('status', resolve));
    this.call.on('error', () => undefined);
  }

  send(r: Partial<DiscoveryRequest>) {
    this.call.write({ versionInfo: '', resourceNames: [], typeUrl: '', responseNonce: '', ...r });
  }

  next(timeoutMs = 5000): Promise<ReceivedDiscoveryResponse> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no xDS response')), timeoutMs);
      this.waiters.push((r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }

  get pending() {
    return this.queue.length;
  }

  close() {
    this.call.cancel();
    this.client.close();
  }
}

export const nodeOf = (marathonId: string, ip = '10.0.0.5') => ({ id: `sidecar~${ip}~${marathonId.slice(1).replace(/\//g, '_')}.1`, cluster: marathonId, metadata: { CITADEL_MARATHON_ID: marathonId }, userAgentName: 'envoy', userAgentVersion: '1.40.0' });
export const names = (r: ReceivedDiscoveryResponse, type: string) =>
  r.resources.map((x) => (envoyProtoRoot().lookupType(type).decode(x.value) as unknown as { name?: string; cluster_name?: string })).map((m) => m.name ?? m.cluster_name);

