/**
 * Strict checks of generated Envoy configuration against Envoy's own .proto files (as shipped in
 * @grpc/grpc-js-xds/deps), read with protobufjs: every field must exist in its message (snake_case
 * proto names, as we generate them), carry the right JSON type, not be deprecated, and set at most
 * one member of a oneof; every Any (`@type`, typed_config) must name a loaded type and is checked
 * the same way, recursively (TypedStruct values too).
 *
 *   assertStrictEnvoyMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrap);
 *   assertStrictEnvoyMessage('envoy.config.listener.v3.Listener', listener);
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';

const XDS_DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const INCLUDE_DIRS = [
  ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(XDS_DEPS, d)),
  path.dirname(require.resolve('protobufjs/package.json')), // google/protobuf/descriptor.proto and the other well-known types
];

/**
 * The .proto files loaded: the bootstrap (which pulls in listeners, clusters, routes, endpoints,
 * core) and the extensions our generators put into Any fields. Add a file here when a generator
 * uses a new extension; an Any naming an unloaded type is reported as such.
 */
export const ENVOY_PROTO_FILES: readonly string[] = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/service/discovery/v3/discovery.proto',
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

let cachedRoot: protobuf.Root | undefined;

/** Envoy's API as protobufjs types (loaded once per process; a few seconds). */
export function envoyProtoRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of INCLUDE_DIRS) {
      const p = path.join(dir, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  root.loadSync([...ENVOY_PROTO_FILES], { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

export interface StrictOptions {
  /**
   * Deprecated fields used on purpose, by full name (`envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext.match_subject_alt_names`:
   * grpc-js-xds 1.14 reads only that one).
   */
  allowDeprecated?: readonly string[];
}

/** Every problem found in `json` as the message `typeName`, each prefixed with its JSON path; empty when it is strictly valid. */
export function strictEnvoyProblems(typeName: string, json: unknown, options: StrictOptions = {}): string[] {
  const root = envoyProtoRoot();
  const problems: string[] = [];
  new StrictWalker(root, problems, new Set(options.allowDeprecated ?? [])).message(root.lookupType(typeName), json, '$');
  return problems;
}

/** Fails the test with every problem found (see strictEnvoyProblems). */
export function assertStrictEnvoyMessage(typeName: string, json: unknown, options: StrictOptions = {}): void {
  const problems = strictEnvoyProblems(typeName, json, options);
  assert.deepEqual(problems, [], `${typeName} is not strictly valid:\n  ${problems.join('\n  ')}`);
}

/**
 * The proto3 JSON `json` (as the generators write it) encoded as the binary message `typeName`:
 * what an xDS client decodes. Durations, wrappers and Any are mapped the way protobufjs wants
 * them; check with strictEnvoyProblems first, this does not report problems.
 */
export function encodeEnvoyMessage(typeName: string, json: unknown): Uint8Array {
  const root = envoyProtoRoot();
  const type = root.lookupType(typeName);
  return type.encode(type.fromObject(protobufObject(root, type, json) as Record<string, unknown>)).finish();
}

function protobufObject(root: protobuf.Root, type: protobuf.Type, v: unknown): unknown {
  const name = type.fullName;
  if (WRAPPERS[name]) return { value: v };
  if (name === '.google.protobuf.Duration') {
    const m = /^(-?\d+)(?:\.(\d{1,9}))?s$/.exec(String(v));
    if (!m) throw new Error(`not a duration: ${JSON.stringify(v)}`);
    return { seconds: Number(m[1]), nanos: m[2] ? Number(m[2].padEnd(9, '0')) : 0 };
  }
  if (name === '.google.protobuf.Any') {
    const { '@type': url, ...fields } = v as Record<string, unknown>;
    const inner = root.lookupType(String(url).slice(String(url).lastIndexOf('/') + 1));
    const value = inner.encode(inner.fromObject(protobufObject(root, inner, fields) as Record<string, unknown>)).finish();
    return { type_url: url, value };
  }
  if (SPECIAL_JSON.has(name)) throw new Error(`encodeEnvoyMessage does not map ${name.slice(1)}`);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(v as Record<string, unknown>)) {
    const field = type.fields[key];
    const t = field.resolve().resolvedType;
    const one = (item: unknown) => (t instanceof protobuf.Type ? protobufObject(root, t, item) : item);
    if (field.map) out[key] = Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, item]) => [k, one(item)]));
    else if (field.repeated) out[key] = (value as unknown[]).map(one);
    else out[key] = one(value);
  }
  return out;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

const WRAPPERS: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double', '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64', '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32', '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool', '.google.protobuf.StringValue': 'string', '.google.protobuf.BytesValue': 'bytes',
};
/** Types whose JSON form is not an object of their fields (proto3 JSON mapping). */
const SPECIAL_JSON = new Set([
  '.google.protobuf.Duration', '.google.protobuf.Timestamp', '.google.protobuf.Struct', '.google.protobuf.Value',
  '.google.protobuf.ListValue', '.google.protobuf.FieldMask', '.google.protobuf.NullValue', ...Object.keys(WRAPPERS),
]);
const TYPED_STRUCTS = new Set(['.udpa.type.v1.TypedStruct', '.xds.type.v3.TypedStruct']);

class StrictWalker {
  constructor(
    private readonly root: protobuf.Root,
    private readonly problems: string[],
    private readonly allowDeprecated: ReadonlySet<string>,
  ) {}

  private fail(at: string, what: string): void {
    this.problems.push(`${at}: ${what}`);
  }

  message(type: protobuf.Type, v: unknown, at: string): void {
    const name = type.fullName;
    if (WRAPPERS[name]) return this.scalar(WRAPPERS[name], v, at);
    switch (name) {
      case '.google.protobuf.Duration':
        if (typeof v !== 'string' || !/^-?\d+(\.\d{1,9})?s$/.test(v)) this.fail(at, `expected a duration like "1.5s", got ${JSON.stringify(v)}`);
        return;
      case '.google.protobuf.Timestamp':
        if (typeof v !== 'string' || Number.isNaN(Date.parse(v))) this.fail(at, `expected an RFC 3339 timestamp, got ${JSON.stringify(v)}`);
        return;
      case '.google.protobuf.Struct':
        if (!isPlainObject(v)) this.fail(at, `expected an object (Struct), got ${describe(v)}`);
        return;
      case '.google.protobuf.Value':
        return;
      case '.google.protobuf.ListValue':
        if (!Array.isArray(v)) this.fail(at, `expected an array (ListValue), got ${describe(v)}`);
        return;
      case '.google.protobuf.FieldMask':
        if (typeof v !== 'string') this.fail(at, `expected a string (FieldMask), got ${describe(v)}`);
        return;
      case '.google.protobuf.Any':
        return this.any(v, at);
    }
    if (!isPlainObject(v)) return this.fail(at, `expected an object (${name.slice(1)}), got ${describe(v)}`);
    this.fields(type, v, at);
  }

  private fields(type: protobuf.Type, v: Record<string, unknown>, at: string, skip: ReadonlySet<string> = new Set()): void {
    const oneofs = new Map<string, string>();
    for (const [key, value] of Object.entries(v)) {
      if (skip.has(key)) continue;
      const p = `${at}.${key}`;
      const field = type.fields[key];
      if (!field) {
        this.fail(p, `no field "${key}" in ${type.fullName.slice(1)}`);
        continue;
      }
      if (field.options?.deprecated === true && !this.allowDeprecated.has(`${type.fullName.slice(1)}.${key}`)) this.fail(p, `deprecated field of ${type.fullName.slice(1)}`);
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
        for (const [k, item] of Object.entries(value)) this.value(field, item, `${p}[${JSON.stringify(k)}]`);
      } else if (field.repeated) {
        if (!Array.isArray(value)) {
          this.fail(p, `expected an array, got ${describe(value)}`);
          continue;
        }
        value.forEach((item, i) => this.value(field, item, `${p}[${i}]`));
      } else {
        this.value(field, value, p);
      }
    }
  }

  private value(field: protobuf.Field, v: unknown, at: string): void {
    const t = field.resolve().resolvedType;
    if (t instanceof protobuf.Type) return this.message(t, v, at);
    if (t instanceof protobuf.Enum) return this.enumValue(t, v, at);
    this.scalar(field.type, v, at);
  }

  private enumValue(e: protobuf.Enum, v: unknown, at: string): void {
    if (typeof v === 'number' && Object.values(e.values).includes(v)) return;
    if (typeof v !== 'string' || !(v in e.values)) {
      this.fail(at, `${JSON.stringify(v)} is not a value of ${e.fullName.slice(1)} (${Object.keys(e.values).join(', ')})`);
      return;
    }
    const options = (e as protobuf.Enum & { valuesOptions?: Record<string, Record<string, unknown>> }).valuesOptions?.[v];
    if (options?.deprecated === true) this.fail(at, `deprecated value ${v} of ${e.fullName.slice(1)}`);
  }

  private scalar(type: string, v: unknown, at: string): void {
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
          return typeof v === 'number' || v === 'NaN' || v === 'Infinity' || v === '-Infinity';
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
    if (!ok) this.fail(at, `expected ${type}, got ${JSON.stringify(v)}`);
  }

  private lookup(typeUrl: string, at: string): protobuf.Type | undefined {
    const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    if (!typeUrl.includes('/') || name.length === 0) {
      this.fail(at, `type URL ${JSON.stringify(typeUrl)} is not type.googleapis.com/<message>`);
      return undefined;
    }
    try {
      return this.root.lookupType(name);
    } catch {
      this.fail(at, `type ${name} is not loaded (add its .proto to ENVOY_PROTO_FILES in test/helpers/envoy-proto.ts)`);
      return undefined;
    }
  }

  private any(v: unknown, at: string): void {
    if (!isPlainObject(v)) return this.fail(at, `expected an object (Any), got ${describe(v)}`);
    const url = v['@type'];
    if (typeof url !== 'string') return this.fail(`${at}.@type`, 'an Any needs "@type"');
    const type = this.lookup(url, `${at}.@type`);
    if (!type) return;
    if (SPECIAL_JSON.has(type.fullName)) {
      const extra = Object.keys(v).filter((k) => k !== '@type' && k !== 'value');
      if (extra.length) this.fail(at, `an Any of ${type.fullName.slice(1)} holds only "value", not ${extra.join(', ')}`);
      if ('value' in v) this.message(type, v.value, `${at}.value`);
      return;
    }
    this.fields(type, v, at, new Set(['@type']));
    if (TYPED_STRUCTS.has(type.fullName) && typeof v.type_url === 'string') {
      const inner = this.lookup(v.type_url, `${at}.type_url`);
      if (inner) this.message(inner, v.value ?? {}, `${at}.value`);
    }
  }
}
