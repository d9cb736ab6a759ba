/**
 * Envoy's discovery messages (envoy.service.discovery.v3 DiscoveryRequest/DiscoveryResponse; v2's
 * agree on the wire for everything used here, ISTIO-FACTS.md) with a hand codec: they are the hot
 * path of SDS and xDS (ten thousand streams, a push to each), and a real Envoy's first request
 * is about 60 KB of node extensions we do not need to materialise. A test checks the codec
 * against Envoy's official protos as protobufjs reads them.
 */
import type { FieldPlan } from './field-sieve';
import type { JsonValue } from '../common/json';
import { asNumber, asString, FieldValue, ProtoDecodeError, readFields, WIRE, Writer } from './wire';

export type { JsonValue };

/** The parts of envoy.config.core.v3.Node a control plane uses. */
export interface XdsNode {
  id: string;
  cluster: string;
  metadata: Record<string, JsonValue>;
  userAgentName: string;
  /** `user_agent_version` (gRPC clients) or `major.minor.patch` of `user_agent_build_version` (Envoy). */
  userAgentVersion: string;
}

export interface DiscoveryRequest {
  versionInfo: string;
  node?: XdsNode;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  errorDetail?: { code: number; message: string };
}

/** A resource ready to send: its message bytes (wrapped in an Any of the response's type URL). */
export interface EncodedResource {
  name: string;
  value: Buffer;
}

export interface DiscoveryResponse {
  versionInfo: string;
  resources: EncodedResource[];
  typeUrl: string;
  nonce: string;
  controlPlane?: string;
}

const { VARINT, LEN, I64 } = WIRE;

// --- google.protobuf.Struct --------------------------------------------------------------

function decodeValue(b: Buffer): JsonValue {
  let v: JsonValue = null;
  readFields(b, (f, w, x) => {
    if (f === 1 && w === VARINT) v = null;
    else if (f === 2 && w === I64) v = (x as Buffer).readDoubleLE(0);
    else if (f === 3 && w === LEN) v = asString(x);
    else if (f === 4 && w === VARINT) v = x !== 0;
    else if (f === 5 && w === LEN) v = decodeStruct(x as Buffer);
    else if (f === 6 && w === LEN) {
      const list: JsonValue[] = [];
      readFields(x as Buffer, (lf, lw, lx) => {
        if (lf === 1 && lw === LEN) list.push(decodeValue(lx as Buffer));
      });
      v = list;
    }
  });
  return v;
}

export function decodeStruct(b: Buffer): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = Object.create(null);
  readFields(b, (f, w, entry) => {
    if (f !== 1 || w !== LEN) return;
    let key = '';
    let value: JsonValue = null;
    readFields(entry as Buffer, (ef, ew, ev) => {
      if (ef === 1 && ew === LEN) key = asString(ev);
      else if (ef === 2 && ew === LEN) value = decodeValue(ev as Buffer);
    });
    out[key] = value;
  });
  return out;
}

/** null_value (field 1, NULL_VALUE = 0), written out so the oneof is set. */
const NULL_VALUE = Buffer.from([0x08, 0x00]);

function encodeValue(v: JsonValue): Buffer {
  if (v === null) return NULL_VALUE;
  const w = new Writer();
  if (typeof v === 'number') w.double(2, v);
  else if (typeof v === 'string') w.always(3, v);
  else if (typeof v === 'boolean') w.int(4, v ? 1 : 0);
  else if (Array.isArray(v)) {
    const list = new Writer();
    for (const item of v) list.always(1, encodeValue(item));
    w.always(6, list.finish());
  } else w.always(5, encodeStruct(v));
  return w.finish();
}

export function encodeStruct(fields: Record<string, JsonValue>): Buffer {
  const w = new Writer();
  for (const [k, v] of Object.entries(fields)) w.always(1, new Writer().always(1, k).always(2, encodeValue(v)).finish());
  return w.finish();
}

// --- Node ------------------------------------------------------------------------------------

/** The Node fields read; 9 (extensions: 516 in a real Envoy, most of its ~60 KB), 10 (client features) and 4 (locality) are stepped over. */
const NODE_FIELDS: ReadonlySet<number> = new Set([1, 2, 3, 6, 7, 8]);

/** What DiscoveryRequest.decode reads, for the transport to keep of a large request as it arrives (field-sieve.ts). */
export const DISCOVERY_REQUEST_FIELDS: FieldPlan = new Map<number, true | FieldPlan>([
  [1, true],
  [2, new Map([...NODE_FIELDS].map((f) => [f, true as const]))],
  [3, true],
  [4, true],
  [5, true],
  [6, true],
]);

function decodeNode(b: Buffer): XdsNode {
  const node: XdsNode = { id: '', cluster: '', metadata: {}, userAgentName: '', userAgentVersion: '' };
  readFields(b, (f, w, v) => {
    if (w !== LEN) return;
    if (f === 1) node.id = asString(v);
    else if (f === 2) node.cluster = asString(v);
    else if (f === 3) node.metadata = decodeStruct(v as Buffer);
    else if (f === 6) node.userAgentName = asString(v);
    else if (f === 7) node.userAgentVersion = asString(v);
    else if (f === 8) node.userAgentVersion = buildVersion(v as Buffer);
  }, NODE_FIELDS);
  return node;
}

function buildVersion(b: Buffer): string {
  let major = 0;
  let minor = 0;
  let patch = 0;
  readFields(b, (f, w, v) => {
    if (f !== 1 || w !== LEN) return;
    readFields(v as Buffer, (sf, sw, sv) => {
      if (sw !== VARINT) return;
      if (sf === 1) major = asNumber(sv);
      else if (sf === 2) minor = asNumber(sv);
      else if (sf === 3) patch = asNumber(sv);
    });
  });
  return `${major}.${minor}.${patch}`;
}

function encodeNode(n: Partial<XdsNode>): Buffer {
  const w = new Writer().bytes(1, n.id).bytes(2, n.cluster);
  if (n.metadata && Object.keys(n.metadata).length) w.always(3, encodeStruct(n.metadata));
  return w.bytes(6, n.userAgentName).bytes(7, n.userAgentVersion).finish();
}

// --- requests and responses -------------------------------------------------------------------

export const discoveryCodec = {
  DiscoveryRequest: {
    decode(b: Buffer): DiscoveryRequest {
      const m: DiscoveryRequest = { versionInfo: '', resourceNames: [], typeUrl: '', responseNonce: '' };
      readFields(b, (f, w, v: FieldValue) => {
        if (w !== LEN) return;
        if (f === 1) m.versionInfo = asString(v);
        else if (f === 2) m.node = decodeNode(v as Buffer);
        else if (f === 3) m.resourceNames.push(asString(v));
        else if (f === 4) m.typeUrl = asString(v);
        else if (f === 5) m.responseNonce = asString(v);
        else if (f === 6) {
          const status = { code: 0, message: '' };
          readFields(v as Buffer, (sf, sw, sv) => {
            if (sf === 1 && sw === VARINT) status.code = asNumber(sv);
            else if (sf === 2 && sw === LEN) status.message = asString(sv);
          });
          m.errorDetail = status;
        }
      });
      return m;
    },
    encode(m: Partial<DiscoveryRequest>): Buffer {
      const w = new Writer().bytes(1, m.versionInfo);
      if (m.node) w.always(2, encodeNode(m.node));
      for (const n of m.resourceNames ?? []) w.always(3, n);
      w.bytes(4, m.typeUrl).bytes(5, m.responseNonce);
      if (m.errorDetail) w.always(6, new Writer().int(1, m.errorDetail.code).bytes(2, m.errorDetail.message).finish());
      return w.finish();
    },
  },
  DiscoveryResponse: {
    encode(m: DiscoveryResponse): Buffer {
      const w = new Writer().bytes(1, m.versionInfo);
      const typeUrl = Buffer.from(m.typeUrl, 'utf8');
      for (const r of m.resources) w.always(2, new Writer().always(1, typeUrl).always(2, r.value).finish());
      w.bytes(4, typeUrl).bytes(5, m.nonce);
      if (m.controlPlane) w.always(6, new Writer().bytes(1, m.controlPlane).finish());
      return w.finish();
    },
    /** For clients (tests, benchmarks): each resource's Any type URL and bytes. */
    decode(b: Buffer): { versionInfo: string; typeUrl: string; nonce: string; resources: Array<{ typeUrl: string; value: Buffer }> } {
      const m = { versionInfo: '', typeUrl: '', nonce: '', resources: [] as Array<{ typeUrl: string; value: Buffer }> };
      readFields(b, (f, w, v) => {
        if (w !== LEN) return;
        if (f === 1) m.versionInfo = asString(v);
        else if (f === 2) {
          const any = { typeUrl: '', value: Buffer.alloc(0) };
          readFields(v as Buffer, (af, aw, av) => {
            if (af === 1 && aw === LEN) any.typeUrl = asString(av);
            else if (af === 2 && aw === LEN) any.value = Buffer.from(av as Buffer);
          });
          m.resources.push(any);
        } else if (f === 4) m.typeUrl = asString(v);
        else if (f === 5) m.nonce = asString(v);
      });
      return m;
    },
  },
};

export { ProtoDecodeError };
