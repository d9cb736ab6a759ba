/**
 * An SDS client as Envoy speaks it, from Envoy's official protos (v3) and our v2 protos, over
 * the node agent's Unix socket with @grpc/grpc-js: streams, ACKs, NACKs, decoded Secrets.
 */
import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest } from '../../src/api/discovery';
import { envoyProtoRoot, SDS_PROTO_FILES } from '../../src/api/envoy-protos';
import type { ReceivedDiscoveryResponse } from '../../src/api/discovery-services';
import { SdsApiVersion, sdsServices, sdsV2ProtoRoot, SECRET_TYPE_URL } from '../../src/api/sds';

export interface DecodedSecret {
  name: string;
  certificateChain?: string;
  privateKey?: string;
  trustedCa?: string;
}

export interface SdsResponse {
  versionInfo: string;
  nonce: string;
  typeUrl: string;
  secrets: DecodedSecret[];
  /** Each resource's Any type URL. */
  resourceTypes: string[];
}

/** Decodes a Secret with the official (v3) or our (v2) Secret type. */
export function decodeSecret(bytes: Buffer, api: SdsApiVersion = 'v3'): DecodedSecret {
  const type = api === 'v3' ? envoyProtoRoot(SDS_PROTO_FILES).lookupType('envoy.extensions.transport_sockets.tls.v3.Secret') : sdsV2ProtoRoot().lookupType('envoy.api.v2.auth.Secret');
  const o = type.toObject(type.decode(bytes), { bytes: String }) as { name: string; tls_certificate?: { certificate_chain?: { inline_bytes?: string }; private_key?: { inline_bytes?: string } }; validation_context?: { trusted_ca?: { inline_bytes?: string } } };
  const text = (b64?: string) => (b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8'));
  return { name: o.name, certificateChain: text(o.tls_certificate?.certificate_chain?.inline_bytes), privateKey: text(o.tls_certificate?.private_key?.inline_bytes), trustedCa: text(o.validation_context?.trusted_ca?.inline_bytes) };
}

export class SdsStream {
  private readonly responses: SdsResponse[] = [];
  private readonly waiters: Array<(r: SdsResponse) => void> = [];
  /** The status the stream ended with, once it has. */
  ended: Promise<grpc.StatusObject>;
  received = 0;

  constructor(private readonly call: grpc.ClientDuplexStream<DiscoveryRequest, ReceivedDiscoveryResponse>, readonly api: SdsApiVersion) {
    call.on('data', (raw: ReceivedDiscoveryResponse) => {
      this.received++;
      const r: SdsResponse = { versionInfo: raw.versionInfo, nonce: raw.nonce, typeUrl: raw.typeUrl, secrets: raw.resources.map((x) => decodeSecret(x.value, api)), resourceTypes: raw.resources.map((x) => x.typeUrl) };
      const w = this.waiters.shift();
      if (w) w(r);
      else this.responses.push(r);
    });
    this.ended = new Promise((resolve) => {
      call.on('status', resolve);
      call.on('error', () => undefined);
    });
  }

  send(req: Partial<DiscoveryRequest>): void {
    this.call.write({ versionInfo: '', resourceNames: [], typeUrl: SECRET_TYPE_URL[this.api], responseNonce: '', ...req });
  }

  /** The next response (already received or to come), or a timeout error. */
  next(timeoutMs = 10_000): Promise<SdsResponse> {
    const ready = this.responses.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(done), 1);
        reject(new Error(`no SDS response within ${timeoutMs} ms`));
      }, timeoutMs);
      t.unref(); // a reader left waiting on an ended stream must not keep the test process alive
      void this.ended.then(() => {
        if (this.waiters.includes(done)) {
          this.waiters.splice(this.waiters.indexOf(done), 1);
          clearTimeout(t);
          reject(new Error('the stream ended before another response'));
        }
      });
      const done = (r: SdsResponse) => {
        clearTimeout(t);
        resolve(r);
      };
      this.waiters.push(done);
    });
  }

  /** Responses received and not yet read. */
  get pending(): number {
    return this.responses.length;
  }

  ack(r: SdsResponse, names: string[]): void {
    this.send({ versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: names });
  }

  nack(r: SdsResponse, names: string[], previousVersion: string, message: string): void {
    this.send({ versionInfo: previousVersion, responseNonce: r.nonce, resourceNames: names, errorDetail: { code: 13, message } });
  }

  /** Half-closes: no more requests from this side (what a client does when it has nothing left to ask). */
  end(): void {
    this.call.end();
  }

  close(): void {
    this.call.cancel();
  }
}

/** A client on one identity's socket (one HTTP/2 connection; many streams). */
export class SdsTestClient {
  private readonly client: grpc.Client;
  private readonly services = new Map(sdsServices().map((s) => [s.version, s]));

  constructor(readonly socketPath: string) {
    this.client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  }

  /** Opens a stream and sends the first request (with a node, as Envoy does). */
  open(names: string[], api: SdsApiVersion = 'v3', node = { id: 'sidecar~127.0.0.1~test', cluster: '/test', metadata: {}, userAgentName: 'envoy', userAgentVersion: '1.40.0' }): SdsStream {
    const def = this.services.get(api)!.StreamSecrets;
    const call = this.client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize as unknown as (b: Buffer) => ReceivedDiscoveryResponse, {});
    const s = new SdsStream(call, api);
    s.send({ resourceNames: names, node });
    return s;
  }

  /** FetchSecrets (unary). */
  fetch(names: string[], api: SdsApiVersion = 'v3'): Promise<SdsResponse> {
    const def = this.services.get(api)!.FetchSecrets;
    return new Promise((resolve, reject) =>
      this.client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize as unknown as (b: Buffer) => ReceivedDiscoveryResponse, { versionInfo: '', resourceNames: names, typeUrl: SECRET_TYPE_URL[api], responseNonce: '' }, (err, raw) =>
        err ? reject(err) : resolve({ versionInfo: raw!.versionInfo, nonce: raw!.nonce, typeUrl: raw!.typeUrl, secrets: raw!.resources.map((x) => decodeSecret(x.value, api)), resourceTypes: raw!.resources.map((x) => x.typeUrl) }),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}
