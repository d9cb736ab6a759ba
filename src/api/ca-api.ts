/**
 * The CA's gRPC API as typed messages, codecs and service definitions, shared by the server that
 * serves them and the node agent that calls them. The .proto files under ./proto are the
 * contract for third parties (Istio's `istio.v1.auth` services and our `citadel.v1.NodeService`);
 * the codecs here are hand-written on ./wire (a test checks each against protobufjs).
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type { AccountRef } from '../pki/identity';
import { asBytes, asInt32, asNumber, asString, Codec, readFields, WIRE, Writer } from './wire';

// --- messages ------------------------------------------------------------------------------

export interface IstioCertificateRequest {
  csr: string;
  subjectId: string;
  /** Seconds; 0 when absent. */
  validityDuration: number;
}
export interface IstioCertificateResponse {
  certChain: string[];
}
export interface CsrRequest {
  csrPem: Buffer;
  nodeAgentCredential: Buffer;
  credentialType: string;
  requestedTtlMinutes: number;
}
export interface CsrResponse {
  isApproved: boolean;
  status?: { code: number; message: string };
  signedCert: Buffer;
  certChain: Buffer;
}
export interface AttestNodeRequest {
  joinToken: string;
  host: string;
  csr: string;
  validityDuration: number;
}
export interface AttestNodeResponse {
  certChain: string[];
}
export type WatchSecretsRequest = Record<string, never>;
export type WatchPlacementsRequest = Record<string, never>;
/** `citadel.v1.WorkloadRef`: an identity by namespace and service account. */
export type WorkloadRef = AccountRef;
export interface WorkloadSecret {
  namespace: string;
  serviceAccount: string;
  certChain: string;
  key: string;
  rootCert: string;
  version: string;
}
export interface SecretsUpdate {
  snapshot: boolean;
  secrets: WorkloadSecret[];
  removed: WorkloadRef[];
  /** A part of a snapshot that continues in the next message. */
  more?: boolean;
}
export interface PlacementsUpdate {
  snapshot: boolean;
  placed: WorkloadRef[];
  removed: WorkloadRef[];
}

// --- codecs -----------------------------------------------------------------------------------

const { VARINT, LEN } = WIRE;

const workloadRef: Codec<WorkloadRef> = {
  encode: (r) => new Writer().bytes(1, r.namespace).bytes(2, r.serviceAccount).finish(),
  decode(b) {
    let namespace = '';
    let serviceAccount = '';
    readFields(b, (f, w, v) => {
      if (f === 1 && w === LEN) namespace = asString(v);
      else if (f === 2 && w === LEN) serviceAccount = asString(v);
    });
    return { namespace, serviceAccount };
  },
};

/** `repeated string cert_chain = 1`: IstioCertificateResponse and AttestNodeResponse. */
const certChainMessage: Codec<{ certChain: string[] }> = {
  encode(m) {
    const w = new Writer();
    for (const c of m.certChain) w.always(1, c);
    return w.finish();
  },
  decode(b) {
    const certChain: string[] = [];
    readFields(b, (f, w, v) => {
      if (f === 1 && w === LEN) certChain.push(asString(v));
    });
    return { certChain };
  },
};

const empty: Codec<Record<string, never>> = { encode: () => Buffer.alloc(0), decode: () => ({}) };

export const codec = {
  IstioCertificateRequest: {
    encode: (m: Partial<IstioCertificateRequest>) => new Writer().bytes(1, m.csr).bytes(2, m.subjectId).int(3, m.validityDuration ?? 0).finish(),
    decode(b: Buffer): IstioCertificateRequest {
      const m: IstioCertificateRequest = { csr: '', subjectId: '', validityDuration: 0 };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.csr = asString(v);
        else if (f === 2 && w === LEN) m.subjectId = asString(v);
        else if (f === 3 && w === VARINT) m.validityDuration = asNumber(v);
        // field 4 (metadata, a Struct) is read past and ignored.
      });
      return m;
    },
  },
  IstioCertificateResponse: certChainMessage as Codec<IstioCertificateResponse>,
  CsrRequest: {
    encode: (m: Partial<CsrRequest>) =>
      new Writer().bytes(1, m.csrPem).bytes(2, m.nodeAgentCredential).bytes(3, m.credentialType).int(4, m.requestedTtlMinutes ?? 0).finish(),
    decode(b: Buffer): CsrRequest {
      const m: CsrRequest = { csrPem: Buffer.alloc(0), nodeAgentCredential: Buffer.alloc(0), credentialType: '', requestedTtlMinutes: 0 };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.csrPem = asBytes(v);
        else if (f === 2 && w === LEN) m.nodeAgentCredential = asBytes(v);
        else if (f === 3 && w === LEN) m.credentialType = asString(v);
        else if (f === 4 && w === VARINT) m.requestedTtlMinutes = asInt32(v);
      });
      return m;
    },
  },
  CsrResponse: {
    encode(m: CsrResponse): Buffer {
      const w = new Writer().bool(1, m.isApproved);
      if (m.status) w.always(2, new Writer().int(1, m.status.code).bytes(2, m.status.message).finish());
      return w.bytes(3, m.signedCert).bytes(4, m.certChain).finish();
    },
    decode(b: Buffer): CsrResponse {
      const m: CsrResponse = { isApproved: false, signedCert: Buffer.alloc(0), certChain: Buffer.alloc(0) };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === VARINT) m.isApproved = v !== 0;
        else if (f === 2 && w === LEN) {
          const status = { code: 0, message: '' };
          readFields(v as Buffer, (sf, sw, sv) => {
            if (sf === 1 && sw === VARINT) status.code = asInt32(sv);
            else if (sf === 2 && sw === LEN) status.message = asString(sv);
          });
          m.status = status;
        } else if (f === 3 && w === LEN) m.signedCert = asBytes(v);
        else if (f === 4 && w === LEN) m.certChain = asBytes(v);
      });
      return m;
    },
  },
  AttestNodeRequest: {
    encode: (m: Partial<AttestNodeRequest>) => new Writer().bytes(1, m.joinToken).bytes(2, m.host).bytes(3, m.csr).int(4, m.validityDuration ?? 0).finish(),
    decode(b: Buffer): AttestNodeRequest {
      const m: AttestNodeRequest = { joinToken: '', host: '', csr: '', validityDuration: 0 };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.joinToken = asString(v);
        else if (f === 2 && w === LEN) m.host = asString(v);
        else if (f === 3 && w === LEN) m.csr = asString(v);
        else if (f === 4 && w === VARINT) m.validityDuration = asNumber(v);
      });
      return m;
    },
  },
  AttestNodeResponse: certChainMessage as Codec<AttestNodeResponse>,
  WatchSecretsRequest: empty as Codec<WatchSecretsRequest>,
  WatchPlacementsRequest: empty as Codec<WatchPlacementsRequest>,
  SecretsUpdate: {
    encode(m: SecretsUpdate): Buffer {
      const w = new Writer().bool(1, m.snapshot);
      for (const s of m.secrets) {
        w.always(2, new Writer().bytes(1, s.namespace).bytes(2, s.serviceAccount).bytes(3, s.certChain).bytes(4, s.key).bytes(5, s.rootCert).bytes(6, s.version).finish());
      }
      for (const r of m.removed) w.always(3, workloadRef.encode(r));
      if (m.more) w.bool(4, true);
      return w.finish();
    },
    decode(b: Buffer): SecretsUpdate {
      const m: SecretsUpdate = { snapshot: false, secrets: [], removed: [], more: false };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === VARINT) m.snapshot = v !== 0;
        else if (f === 4 && w === VARINT) m.more = v !== 0;
        else if (f === 2 && w === LEN) {
          const s: WorkloadSecret = { namespace: '', serviceAccount: '', certChain: '', key: '', rootCert: '', version: '' };
          readFields(v as Buffer, (sf, sw, sv) => {
            if (sw !== LEN) return;
            if (sf === 1) s.namespace = asString(sv);
            else if (sf === 2) s.serviceAccount = asString(sv);
            else if (sf === 3) s.certChain = asString(sv);
            else if (sf === 4) s.key = asString(sv);
            else if (sf === 5) s.rootCert = asString(sv);
            else if (sf === 6) s.version = asString(sv);
          });
          m.secrets.push(s);
        } else if (f === 3 && w === LEN) m.removed.push(workloadRef.decode(v as Buffer));
      });
      return m;
    },
  },
  PlacementsUpdate: {
    encode(m: PlacementsUpdate): Buffer {
      const w = new Writer().bool(1, m.snapshot);
      for (const r of m.placed) w.always(2, workloadRef.encode(r));
      for (const r of m.removed) w.always(3, workloadRef.encode(r));
      return w.finish();
    },
    decode(b: Buffer): PlacementsUpdate {
      const m: PlacementsUpdate = { snapshot: false, placed: [], removed: [] };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === VARINT) m.snapshot = v !== 0;
        else if (f === 2 && w === LEN) m.placed.push(workloadRef.decode(v as Buffer));
        else if (f === 3 && w === LEN) m.removed.push(workloadRef.decode(v as Buffer));
      });
      return m;
    },
  },
};

// --- services --------------------------------------------------------------------------------

/** A method definition (the shape @grpc/grpc-js clients and our server both take). */
export function method<Req, Res>(path: string, req: Codec<Req>, res: Codec<Res>, stream: { request?: boolean; response?: boolean } = {}): MethodDefinition<Req, Res> {
  return {
    path,
    requestStream: stream.request ?? false,
    responseStream: stream.response ?? false,
    requestSerialize: (m: Req) => req.encode(m),
    requestDeserialize: (b: Buffer) => req.decode(b),
    responseSerialize: (m: Res) => res.encode(m),
    responseDeserialize: (b: Buffer) => res.decode(b),
  };
}

export const IstioCertificateService = {
  CreateCertificate: method(
    '/istio.v1.auth.IstioCertificateService/CreateCertificate',
    codec.IstioCertificateRequest as Codec<IstioCertificateRequest>,
    codec.IstioCertificateResponse,
  ),
} satisfies ServiceDefinition;

export const IstioCAService = {
  HandleCSR: method('/istio.v1.auth.IstioCAService/HandleCSR', codec.CsrRequest as Codec<CsrRequest>, codec.CsrResponse),
} satisfies ServiceDefinition;

export const NodeService = {
  AttestNode: method('/citadel.v1.NodeService/AttestNode', codec.AttestNodeRequest as Codec<AttestNodeRequest>, codec.AttestNodeResponse),
  WatchSecrets: method('/citadel.v1.NodeService/WatchSecrets', codec.WatchSecretsRequest, codec.SecretsUpdate, { response: true }),
  WatchPlacements: method('/citadel.v1.NodeService/WatchPlacements', codec.WatchPlacementsRequest, codec.PlacementsUpdate, { response: true }),
} satisfies ServiceDefinition;
