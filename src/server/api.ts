/**
 * The CA's gRPC API as typed messages and service definitions, shared by the server and the
 * node agent. The .proto files under ./proto are the contract for third parties; here each
 * message has a small hand-written protobuf codec (the messages are flat), which keeps the
 * per-call cost of the hot path (CreateCertificate) to a few microseconds. A test checks every
 * codec against the .proto files as protobufjs reads them.
 */
import * as path from 'node:path';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

/** Where the .proto files are, from src/ (ts-node) or dist/src/ (built). */
export const PROTO_DIR = path.resolve(__dirname, '..', '..', ...(__dirname.includes(`${path.sep}dist${path.sep}`) ? ['..'] : []), 'src', 'server', 'proto');

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
export interface WorkloadRef {
  namespace: string;
  serviceAccount: string;
}
export interface WorkloadSecret extends WorkloadRef {
  certChain: string;
  key: string;
  rootCert: string;
  version: string;
}
export interface SecretsUpdate {
  snapshot: boolean;
  secrets: WorkloadSecret[];
  removed: WorkloadRef[];
}

// --- protobuf wire format (only what these messages use) ----------------------------------

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

class Writer {
  private chunks: Buffer[] = [];
  private head = Buffer.allocUnsafe(16);

  private varint(v: number): void {
    let n = 0;
    if (v < 0) {
      // int32/int64 negatives are 10-byte two's-complement varints.
      let b = BigInt.asUintN(64, BigInt(v));
      while (b >= 0x80n) {
        this.head[n++] = Number(b & 0x7fn) | 0x80;
        b >>= 7n;
      }
      this.head[n++] = Number(b);
    } else {
      while (v >= 0x80) {
        this.head[n++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      this.head[n++] = v;
    }
    this.chunks.push(Buffer.from(this.head.subarray(0, n)));
  }

  int(field: number, v: number): this {
    if (v !== 0) {
      this.varint((field << 3) | VARINT);
      this.varint(v);
    }
    return this;
  }

  bool(field: number, v: boolean): this {
    return v ? this.int(field, 1) : this;
  }

  bytes(field: number, v: Buffer | string | undefined): this {
    if (v === undefined) return this;
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    if (b.length === 0) return this;
    this.varint((field << 3) | LEN);
    this.varint(b.length);
    this.chunks.push(b);
    return this;
  }

  /** A length-delimited field that is present even when empty (repeated strings, sub-messages). */
  always(field: number, b: Buffer): this {
    this.varint((field << 3) | LEN);
    this.varint(b.length);
    this.chunks.push(b);
    return this;
  }

  finish(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
  }
}

/** Bytes that are not a message of the expected type; gRPC answers such a call INTERNAL. */
export class ProtoDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoDecodeError';
  }
}

/** Calls `on(field, wireType, value)` for each field; LEN values are subarrays, VARINT values numbers. */
function readFields(buf: Buffer, on: (field: number, wire: number, v: number | Buffer) => void): void {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    const start = pos;
    for (let i = 0; i < 7; i++) {
      if (pos >= buf.length) throw new ProtoDecodeError('truncated varint');
      const b = buf[pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 0x80;
    }
    // Beyond 49 bits (negative int32/int64 are 10 bytes): exact, as a signed 64-bit value.
    pos = start;
    let big = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= buf.length) throw new ProtoDecodeError('truncated varint');
      const b = buf[pos++];
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return Number(BigInt.asIntN(64, big));
    }
    throw new ProtoDecodeError('varint too long');
  };
  while (pos < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 0) throw new ProtoDecodeError('field number 0');
    switch (wire) {
      case VARINT:
        on(field, wire, varint());
        break;
      case LEN: {
        const len = varint();
        if (len < 0) throw new ProtoDecodeError('negative field length'); // a 10-byte varint; it would move pos back
        if (pos + len > buf.length) throw new ProtoDecodeError('truncated field');
        on(field, wire, buf.subarray(pos, pos + len));
        pos += len;
        break;
      }
      case I64:
        pos += 8;
        break;
      case I32:
        pos += 4;
        break;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wire}`);
    }
    if (pos > buf.length) throw new ProtoDecodeError('truncated field');
  }
}

const str = (v: number | Buffer) => (Buffer.isBuffer(v) ? v.toString('utf8') : '');
const buf = (v: number | Buffer) => (Buffer.isBuffer(v) ? Buffer.from(v) : Buffer.alloc(0));
const num = (v: number | Buffer) => (typeof v === 'number' ? v : 0);
/** int32 fields arrive as 64-bit varints when negative. */
const int32 = (v: number | Buffer) => (typeof v === 'number' ? (v > 0x7fffffff && v < 2 ** 32 ? v - 2 ** 32 : v) : 0);

export const codec = {
  IstioCertificateRequest: {
    encode: (m: Partial<IstioCertificateRequest>) => new Writer().bytes(1, m.csr).bytes(2, m.subjectId).int(3, m.validityDuration ?? 0).finish(),
    decode(b: Buffer): IstioCertificateRequest {
      const m: IstioCertificateRequest = { csr: '', subjectId: '', validityDuration: 0 };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.csr = str(v);
        else if (f === 2 && w === LEN) m.subjectId = str(v);
        else if (f === 3 && w === VARINT) m.validityDuration = num(v);
        // field 4 (metadata, a Struct) is read past and ignored.
      });
      return m;
    },
  },
  IstioCertificateResponse: {
    encode(m: IstioCertificateResponse): Buffer {
      const w = new Writer();
      for (const c of m.certChain) w.always(1, Buffer.from(c, 'utf8'));
      return w.finish();
    },
    decode(b: Buffer): IstioCertificateResponse {
      const m: IstioCertificateResponse = { certChain: [] };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.certChain.push(str(v));
      });
      return m;
    },
  },
  CsrRequest: {
    encode: (m: Partial<CsrRequest>) =>
      new Writer().bytes(1, m.csrPem).bytes(2, m.nodeAgentCredential).bytes(3, m.credentialType).int(4, m.requestedTtlMinutes ?? 0).finish(),
    decode(b: Buffer): CsrRequest {
      const m: CsrRequest = { csrPem: Buffer.alloc(0), nodeAgentCredential: Buffer.alloc(0), credentialType: '', requestedTtlMinutes: 0 };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.csrPem = buf(v);
        else if (f === 2 && w === LEN) m.nodeAgentCredential = buf(v);
        else if (f === 3 && w === LEN) m.credentialType = str(v);
        else if (f === 4 && w === VARINT) m.requestedTtlMinutes = int32(v);
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
            if (sf === 1 && sw === VARINT) status.code = int32(sv);
            else if (sf === 2 && sw === LEN) status.message = str(sv);
          });
          m.status = status;
        } else if (f === 3 && w === LEN) m.signedCert = buf(v);
        else if (f === 4 && w === LEN) m.certChain = buf(v);
      });
      return m;
    },
  },
  AttestNodeRequest: {
    encode: (m: Partial<AttestNodeRequest>) =>
      new Writer().bytes(1, m.joinToken).bytes(2, m.host).bytes(3, m.csr).int(4, m.validityDuration ?? 0).finish(),
    decode(b: Buffer): AttestNodeRequest {
      const m: AttestNodeRequest = { joinToken: '', host: '', csr: '', validityDuration: 0 };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === LEN) m.joinToken = str(v);
        else if (f === 2 && w === LEN) m.host = str(v);
        else if (f === 3 && w === LEN) m.csr = str(v);
        else if (f === 4 && w === VARINT) m.validityDuration = num(v);
      });
      return m;
    },
  },
  AttestNodeResponse: {
    encode: (m: AttestNodeResponse) => codecIstioResponseLike(m.certChain),
    decode: (b: Buffer): AttestNodeResponse => ({ certChain: codec.IstioCertificateResponse.decode(b).certChain }),
  },
  WatchSecretsRequest: {
    encode: (_m: WatchSecretsRequest) => Buffer.alloc(0),
    decode: (_b: Buffer): WatchSecretsRequest => ({}),
  },
  SecretsUpdate: {
    encode(m: SecretsUpdate): Buffer {
      const w = new Writer().bool(1, m.snapshot);
      for (const s of m.secrets) {
        w.always(
          2,
          new Writer().bytes(1, s.namespace).bytes(2, s.serviceAccount).bytes(3, s.certChain).bytes(4, s.key).bytes(5, s.rootCert).bytes(6, s.version).finish(),
        );
      }
      for (const r of m.removed) w.always(3, new Writer().bytes(1, r.namespace).bytes(2, r.serviceAccount).finish());
      return w.finish();
    },
    decode(b: Buffer): SecretsUpdate {
      const m: SecretsUpdate = { snapshot: false, secrets: [], removed: [] };
      readFields(b, (f, w, v) => {
        if (f === 1 && w === VARINT) m.snapshot = v !== 0;
        else if (f === 2 && w === LEN) {
          const s: WorkloadSecret = { namespace: '', serviceAccount: '', certChain: '', key: '', rootCert: '', version: '' };
          readFields(v as Buffer, (sf, sw, sv) => {
            if (sw !== LEN) return;
            if (sf === 1) s.namespace = str(sv);
            else if (sf === 2) s.serviceAccount = str(sv);
            else if (sf === 3) s.certChain = str(sv);
            else if (sf === 4) s.key = str(sv);
            else if (sf === 5) s.rootCert = str(sv);
            else if (sf === 6) s.version = str(sv);
          });
          m.secrets.push(s);
        } else if (f === 3 && w === LEN) {
          const r: WorkloadRef = { namespace: '', serviceAccount: '' };
          readFields(v as Buffer, (sf, sw, sv) => {
            if (sf === 1 && sw === LEN) r.namespace = str(sv);
            else if (sf === 2 && sw === LEN) r.serviceAccount = str(sv);
          });
          m.removed.push(r);
        }
      });
      return m;
    },
  },
};

function codecIstioResponseLike(chain: string[]): Buffer {
  return codec.IstioCertificateResponse.encode({ certChain: chain });
}

// --- services --------------------------------------------------------------------------------

interface Codec<T> {
  encode(m: T): Buffer;
  decode(b: Buffer): T;
}

function method<Req, Res>(
  path: string,
  req: Codec<Req>,
  res: Codec<Res>,
  responseStream = false,
): MethodDefinition<Req, Res> {
  return {
    path,
    requestStream: false,
    responseStream,
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
  WatchSecrets: method('/citadel.v1.NodeService/WatchSecrets', codec.WatchSecretsRequest, codec.SecretsUpdate, true),
} satisfies ServiceDefinition;
