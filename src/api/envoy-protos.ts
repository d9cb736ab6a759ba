/**
 * Envoy's official v3 API, loaded with protobufjs from the protos @grpc/grpc-js-xds ships (never
 * copied), and proto3-JSON -> binary with strict checking: the generators write resources as
 * Envoy's YAML/JSON does (snake_case fields, "1s" durations, "@type" in Any), and an unknown
 * field, a wrong type or an Any of an unloaded type is an error, not a silently dropped setting.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { ENVOY_PROTO_DIRS } from './protos';
import { unpooled } from './wire';

/** The .proto files loaded: the bootstrap (listeners, clusters, routes, endpoints, core), discovery, SDS, and the extensions the generators put into Any fields. */
export const ENVOY_PROTO_FILES: readonly string[] = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/secret/v3/sds.proto',
  'envoy/service/cluster/v3/cds.proto',
  'envoy/service/endpoint/v3/eds.proto',
  'envoy/service/listener/v3/lds.proto',
  'envoy/service/route/v3/rds.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/access_loggers/file/v3/file.proto',
  'envoy/extensions/clusters/aggregate/v3/cluster.proto',
  'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
];

const INCLUDE_DIRS = [...ENVOY_PROTO_DIRS, path.dirname(require.resolve('protobufjs/package.json'))];

/** What the node agent's SDS server needs: the service and the Secret (about 60 ms to load, beside 0.4 s for everything). */
export const SDS_PROTO_FILES: readonly string[] = ['envoy/service/secret/v3/sds.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto'];

const roots = new Map<string, protobuf.Root>();
let defaultRoot: protobuf.Root | undefined;

const fullNames = new WeakMap<protobuf.Type, string>();
/** protobufjs computes `fullName` by walking the parents at every read; the walker reads it for every message. */
function fullNameOf(type: protobuf.Type): string {
  let name = fullNames.get(type);
  if (name === undefined) fullNames.set(type, (name = type.fullName));
  return name;
}

/** Envoy's API as protobufjs types, loaded once per process and file set. */
export function envoyProtoRoot(files: readonly string[] = ENVOY_PROTO_FILES): protobuf.Root {
  if (files === ENVOY_PROTO_FILES && defaultRoot) return defaultRoot; // every resource encoded asks: skip the key
  const key = files.join('\n');
  let r = roots.get(key);
  if (r) return r;
  r = new protobuf.Root();
  r.resolvePath = (_origin, target) => INCLUDE_DIRS.map((d) => path.join(d, target)).find((p) => fs.existsSync(p)) ?? target;
  r.loadSync([...files], { keepCase: true });
  r.resolveAll();
  roots.set(key, r);
  if (files === ENVOY_PROTO_FILES) defaultRoot = r;
  return r;
}

export const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** Any problem found converting proto3 JSON, as `path: what`. */
export class EnvoyJsonError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'EnvoyJsonError';
  }
}

/**
 * Encodings of Any values by their JSON object, for callers whose JSON is never changed once
 * encoded (the generators' shared resources): an Any met again (a filter chain's TLS context or
 * HTTP connection manager, the same object in thousands of listeners) is not walked again.
 */
export type AnyEncodings = WeakMap<object, Uint8Array>;

/** The message `typeName` (e.g. envoy.config.cluster.v3.Cluster) from its proto3 JSON, strictly. */
export function encodeEnvoyJson(typeName: string, json: unknown, anyEncodings?: AnyEncodings): Buffer {
  const problems: string[] = [];
  const bytes = new JsonToProto(envoyProtoRoot(), problems, false, undefined, anyEncodings).encode(envoyProtoRoot().lookupType(typeName), json, '$');
  if (problems.length) throw new EnvoyJsonError(problems);
  return bytes;
}

/**
 * Every problem with `json` as `typeName`; empty when valid. With `deprecated`, deprecated fields
 * and enum values are problems too, except those named in `allowDeprecated` (`<message>.<field>`).
 */
export function envoyJsonProblems(typeName: string, json: unknown, opts: { deprecated?: boolean; allowDeprecated?: readonly string[] } = {}): string[] {
  const problems: string[] = [];
  new JsonToProto(envoyProtoRoot(), problems, opts.deprecated ?? false, new Set(opts.allowDeprecated ?? [])).encode(envoyProtoRoot().lookupType(typeName), json, '$');
  return problems;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

const WRAPPERS: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double', '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64', '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32', '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool', '.google.protobuf.StringValue': 'string', '.google.protobuf.BytesValue': 'bytes',
};
/** Types whose JSON form is not an object of their fields (proto3 JSON mapping): in an Any they sit under "value". */
const SPECIAL_JSON = new Set([
  '.google.protobuf.Duration', '.google.protobuf.Timestamp', '.google.protobuf.Struct', '.google.protobuf.Value',
  '.google.protobuf.ListValue', '.google.protobuf.FieldMask', ...Object.keys(WRAPPERS),
]);
const TYPED_STRUCTS = new Set(['.udpa.type.v1.TypedStruct', '.xds.type.v3.TypedStruct']);

/** Seconds and nanos of a proto3 JSON duration ("1.5s", "-0.1s"). */
function parseDuration(v: string): { seconds: number; nanos: number } | undefined {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(v);
  if (!m) return undefined;
  const sign = m[1] ? -1 : 1;
  return { seconds: sign * Number(m[2]), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

/**
 * Walks proto3 JSON against the protobufjs types, building the object protobufjs's fromObject
 * takes (well-known types as their fields, Any as bytes), and collects every problem.
 */
class JsonToProto {
  constructor(
    private readonly root: protobuf.Root,
    private readonly problems: string[],
    private readonly deprecated: boolean,
    private readonly allowDeprecated: ReadonlySet<string> = new Set(),
    private readonly anyEncodings?: AnyEncodings,
  ) {}

  encode(type: protobuf.Type, json: unknown, at: string): Buffer {
    const obj = this.message(type, json, at);
    if (this.problems.length) return Buffer.alloc(0);
    return Buffer.from(type.encode(type.fromObject(obj as Record<string, unknown>)).finish());
  }

  private fail(at: string, what: string): undefined {
    this.problems.push(`${at}: ${what}`);
    return undefined;
  }

  private message(type: protobuf.Type, v: unknown, at: string): unknown {
    const name = fullNameOf(type);
    if (WRAPPERS[name]) return { value: this.scalar(WRAPPERS[name], v, at) };
    switch (name) {
      case '.google.protobuf.Duration': {
        const d = typeof v === 'string' ? parseDuration(v) : undefined;
        return d ?? this.fail(at, `expected a duration like "1.5s", got ${JSON.stringify(v)}`);
      }
      case '.google.protobuf.Timestamp': {
        const ms = typeof v === 'string' ? Date.parse(v) : NaN;
        if (Number.isNaN(ms)) return this.fail(at, `expected an RFC 3339 timestamp, got ${JSON.stringify(v)}`);
        return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
      }
      case '.google.protobuf.Struct':
        return isPlainObject(v) ? this.struct(v, at) : this.fail(at, `expected an object (Struct), got ${describe(v)}`);
      case '.google.protobuf.Value':
        return this.jsonValue(v, at);
      case '.google.protobuf.ListValue':
        return Array.isArray(v) ? { values: v.map((x, i) => this.jsonValue(x, `${at}[${i}]`)) } : this.fail(at, `expected an array (ListValue), got ${describe(v)}`);
      case '.google.protobuf.FieldMask':
        return typeof v === 'string' ? { paths: v.split(',').filter(Boolean) } : this.fail(at, `expected a string (FieldMask), got ${describe(v)}`);
      case '.google.protobuf.Any':
        return this.any(v, at);
    }
    if (!isPlainObject(v)) return this.fail(at, `expected an object (${name.slice(1)}), got ${describe(v)}`);
    return this.fields(type, v, at);
  }

  private struct(v: Record<string, unknown>, at: string): unknown {
    const fields: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) fields[k] = this.jsonValue(x, `${at}[${JSON.stringify(k)}]`);
    return { fields };
  }

  private jsonValue(v: unknown, at: string): unknown {
    if (v === null) return { null_value: 0 };
    if (typeof v === 'number') return { number_value: v };
    if (typeof v === 'string') return { string_value: v };
    if (typeof v === 'boolean') return { bool_value: v };
    if (Array.isArray(v)) return { list_value: { values: v.map((x, i) => this.jsonValue(x, `${at}[${i}]`)) } };
    if (isPlainObject(v)) return { struct_value: this.struct(v, at) };
    return this.fail(at, `${describe(v)} is not JSON`);
  }

  private fields(type: protobuf.Type, v: Record<string, unknown>, at: string, skip: ReadonlySet<string> = new Set()): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const oneofs = new Map<string, string>();
    for (const [key, value] of Object.entries(v)) {
      if (skip.has(key)) continue;
      const p = `${at}.${key}`;
      const field = Object.prototype.hasOwnProperty.call(type.fields, key) ? type.fields[key] : undefined;
      if (!field) {
        this.fail(p, `no field "${key}" in ${type.fullName.slice(1)}`);
        continue;
      }
      if (this.deprecated && field.options?.deprecated === true && !this.allowDeprecated.has(`${type.fullName.slice(1)}.${key}`)) this.fail(p, `deprecated field of ${type.fullName.slice(1)}`);
      if (field.partOf) {
        const other = oneofs.get(field.partOf.name);
        if (other !== undefined) this.fail(p, `oneof ${field.partOf.name} is already set by "${other}"`);
        oneofs.set(field.partOf.name, key);
      }
      if (value === null) {
        this.fail(p, 'null (leave the field out instead)');
        continue;
      }
      if (field.map) {
        if (!isPlainObject(value)) {
          this.fail(p, `expected an object (map), got ${describe(value)}`);
          continue;
        }
        const m: Record<string, unknown> = {};
        for (const [k, item] of Object.entries(value)) m[k] = this.value(field, item, `${p}[${JSON.stringify(k)}]`);
        out[key] = m;
      } else if (field.repeated) {
        if (!Array.isArray(value)) {
          this.fail(p, `expected an array, got ${describe(value)}`);
          continue;
        }
        out[key] = value.map((item, i) => this.value(field, item, `${p}[${i}]`));
      } else {
        out[key] = this.value(field, value, p);
      }
    }
    return out;
  }

  private value(field: protobuf.Field, v: unknown, at: string): unknown {
    const t = field.resolve().resolvedType;
    if (t instanceof protobuf.Type) return this.message(t, v, at);
    if (t instanceof protobuf.Enum) return this.enumValue(t, v, at);
    return this.scalar(field.type, v, at);
  }

  private enumValue(e: protobuf.Enum, v: unknown, at: string): unknown {
    if (typeof v === 'number' && Object.values(e.values).includes(v)) return v;
    if (typeof v !== 'string' || !Object.prototype.hasOwnProperty.call(e.values, v)) {
      return this.fail(at, `${JSON.stringify(v)} is not a value of ${e.fullName.slice(1)} (${Object.keys(e.values).join(', ')})`);
    }
    const options = (e as protobuf.Enum & { valuesOptions?: Record<string, Record<string, unknown>> }).valuesOptions?.[v];
    if (this.deprecated && options?.deprecated === true) this.fail(at, `deprecated value ${v} of ${e.fullName.slice(1)}`);
    return e.values[v];
  }

  private scalar(type: string, v: unknown, at: string): unknown {
    const ok = (() => {
      switch (type) {
        case 'string':
          return typeof v === 'string';
        case 'bool':
          return typeof v === 'boolean';
        case 'bytes':
          return typeof v === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(v);
        case 'double':
        case 'float':
          return typeof v === 'number';
        case 'int32': case 'sint32': case 'sfixed32':
          return Number.isInteger(v) && Math.abs(v as number) <= 2 ** 31;
        case 'uint32': case 'fixed32':
          return Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 32;
        case 'int64': case 'sint64': case 'sfixed64':
          return Number.isSafeInteger(v) || (typeof v === 'string' && /^-?\d+$/.test(v));
        case 'uint64': case 'fixed64':
          return (Number.isSafeInteger(v) && (v as number) >= 0) || (typeof v === 'string' && /^\d+$/.test(v));
        default:
          return false;
      }
    })();
    if (!ok) return this.fail(at, `expected ${type}, got ${JSON.stringify(v)}`);
    if (type === 'bytes') return Buffer.from(v as string, 'base64');
    if (typeof v === 'string' && /int|fixed/.test(type)) return Number(v);
    return v;
  }

  private lookup(typeUrl: string, at: string): protobuf.Type | undefined {
    const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    if (!typeUrl.includes('/') || name.length === 0) return this.fail(at, `type URL ${JSON.stringify(typeUrl)} is not type.googleapis.com/<message>`);
    try {
      return this.root.lookupType(name);
    } catch {
      return this.fail(at, `type ${name} is not loaded (add its .proto to ENVOY_PROTO_FILES in src/api/envoy-protos.ts)`);
    }
  }

  private any(v: unknown, at: string): unknown {
    if (!isPlainObject(v)) return this.fail(at, `expected an object (Any), got ${describe(v)}`);
    const url = v['@type'];
    if (typeof url !== 'string') return this.fail(`${at}.@type`, 'an Any needs "@type"');
    const known = this.anyEncodings?.get(v);
    if (known !== undefined) return { type_url: url, value: known };
    const type = this.lookup(url, `${at}.@type`);
    if (!type) return undefined;
    let inner: unknown;
    if (SPECIAL_JSON.has(fullNameOf(type))) {
      const extra = Object.keys(v).filter((k) => k !== '@type' && k !== 'value');
      if (extra.length) this.fail(at, `an Any of ${type.fullName.slice(1)} holds only "value", not ${extra.join(', ')}`);
      inner = this.message(type, v.value, `${at}.value`);
    } else {
      const fields = this.fields(type, v, at, new Set(['@type']));
      if (TYPED_STRUCTS.has(fullNameOf(type)) && typeof v.type_url === 'string') {
        const innerType = this.lookup(v.type_url, `${at}.type_url`);
        if (innerType) this.message(innerType, v.value ?? {}, `${at}.value`);
      }
      inner = fields;
    }
    if (this.problems.length) return undefined;
    const value = type.encode(type.fromObject(inner as Record<string, unknown>)).finish();
    this.anyEncodings?.set(v, unpooled(value));
    return { type_url: url, value };
  }
}
