/**
 * The hand codec of Envoy's discovery messages (src/api/discovery.ts) against Envoy's official
 * protos as protobufjs reads them: requests as Envoy writes them (a node with extensions, client
 * features, locality, build version) decode to the same fields; our responses decode in protobufjs
 * to what we meant; hostile bytes fail only with ProtoDecodeError.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { discoveryCodec, JsonValue } from '../../../src/api/discovery';
import { envoyProtoRoot, SDS_PROTO_FILES } from '../../../src/api/envoy-protos';
import { ProtoDecodeError } from '../../../src/api/wire';
import { fuzzParameters, parseOrOwnError } from '../../helpers/fuzz';

const root = envoyProtoRoot(SDS_PROTO_FILES);
const Request = root.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
const Response = root.lookupType('envoy.service.discovery.v3.DiscoveryResponse');

const str = fc.string({ maxLength: 30 });
const json: fc.Arbitrary<JsonValue> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.double({ noNaN: true, noDefaultInfinity: true }), str, fc.boolean(), fc.array(tie('value'), { maxLength: 3 }), fc.dictionary(str, tie('value'), { maxKeys: 3 })),
})).value as fc.Arbitrary<JsonValue>;

/** google.protobuf.Value in protobufjs's object form (its built-in well-known types keep camelCase names). */
function toValue(v: JsonValue): object {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}
const toStruct = (o: Record<string, JsonValue>) => ({ fields: Object.fromEntries(Object.entries(o).map(([k, x]) => [k, toValue(x)])) });

const envoyRequest = fc.record({
  version_info: str,
  resource_names: fc.array(str, { maxLength: 3 }),
  type_url: str,
  response_nonce: str,
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: str }), { nil: undefined }),
  node: fc.option(
    fc.record({
      id: str,
      cluster: str,
      metadata: fc.dictionary(str, json, { maxKeys: 4 }),
      user_agent_name: str,
      build: fc.tuple(fc.nat(50), fc.nat(50), fc.nat(50)),
      extensions: fc.array(fc.record({ name: str, category: str, type_urls: fc.array(str, { maxLength: 2 }) }), { maxLength: 20 }),
      client_features: fc.array(str, { maxLength: 3 }),
      zone: str,
    }),
    { nil: undefined },
  ),
});

it('a request as Envoy writes it decodes to the same fields; the node’s extensions are stepped over', () => {
  fc.assert(
    fc.property(envoyRequest, (r) => {
      const bytes = Buffer.from(
        Request.encode(
          Request.fromObject({
            ...r,
            node: r.node && {
              id: r.node.id, cluster: r.node.cluster, metadata: toStruct(r.node.metadata), user_agent_name: r.node.user_agent_name,
              user_agent_build_version: { version: { major_number: r.node.build[0], minor_number: r.node.build[1], patch: r.node.build[2] } },
              extensions: r.node.extensions, client_features: r.node.client_features, locality: { zone: r.node.zone },
            },
          }),
        ).finish(),
      );
      const ours = discoveryCodec.DiscoveryRequest.decode(bytes);
      assert.equal(ours.versionInfo, r.version_info);
      assert.deepEqual(ours.resourceNames, r.resource_names);
      assert.equal(ours.typeUrl, r.type_url);
      assert.equal(ours.responseNonce, r.response_nonce);
      assert.deepEqual(ours.errorDetail, r.error_detail && { ...r.error_detail });
      if (!r.node) return assert.equal(ours.node, undefined);
      assert.equal(ours.node?.id, r.node.id);
      assert.equal(ours.node?.cluster, r.node.cluster);
      assert.equal(ours.node?.userAgentName, r.node.user_agent_name);
      assert.equal(ours.node?.userAgentVersion, r.node.build.join('.'));
      assert.deepEqual(JSON.parse(JSON.stringify(ours.node?.metadata)), JSON.parse(JSON.stringify(r.node.metadata)));
    }),
    fuzzParameters(300, 3000),
  );
});

it('our responses decode in protobufjs to what we meant', () => {
  fc.assert(
    fc.property(str, str, str, fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 3 }), fc.option(str, { nil: undefined }), (versionInfo, typeUrl, nonce, values, controlPlane) => {
      const bytes = discoveryCodec.DiscoveryResponse.encode({ versionInfo, typeUrl, nonce, controlPlane, resources: values.map((v, i) => ({ name: `r${i}`, value: Buffer.from(v) })) });
      const theirs = Response.toObject(Response.decode(bytes), { defaults: true }) as { version_info: string; type_url: string; nonce: string; resources: Array<{ type_url: string; value: Uint8Array }>; control_plane?: { identifier: string } | null };
      assert.equal(theirs.version_info, versionInfo);
      assert.equal(theirs.type_url, typeUrl);
      assert.equal(theirs.nonce, nonce);
      assert.deepEqual(theirs.resources.map((x) => [x.type_url, Buffer.from(x.value)]), values.map((v) => [typeUrl, Buffer.from(v)]));
      assert.equal(theirs.control_plane?.identifier ?? undefined, controlPlane || undefined);
    }),
    fuzzParameters(300, 3000),
  );
});

it('hostile bytes fail only with ProtoDecodeError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      parseOrOwnError([ProtoDecodeError], () => discoveryCodec.DiscoveryRequest.decode(Buffer.from(b)));
    }),
    fuzzParameters(1000, 20000),
  );
});
