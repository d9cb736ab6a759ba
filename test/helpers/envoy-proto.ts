/**
 * Strict checks of generated Envoy configuration against Envoy's own .proto files, through the
 * same proto3-JSON walker the xDS server encodes with (src/api/envoy-protos.ts), plus deprecated
 * fields and enum values: every field must exist in its message, carry the right JSON type, not be
 * deprecated (unless named in `allowDeprecated`), set at most one member of a oneof; every Any
 * must name a loaded type and is checked the same way, recursively.
 *
 *   assertStrictEnvoyMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrap);
 *   assertStrictEnvoyMessage('envoy.config.listener.v3.Listener', listener);
 */
import assert from 'node:assert/strict';
import { encodeEnvoyJson, envoyJsonProblems, envoyProtoRoot, ENVOY_PROTO_FILES } from '../../src/api/envoy-protos';

export { envoyProtoRoot, ENVOY_PROTO_FILES };

export interface StrictOptions {
  /** Deprecated fields a generator must use anyway (`<message>.<field>`), e.g. grpc-js-xds's match_subject_alt_names. */
  allowDeprecated?: readonly string[];
}

/** Every problem found in `json` as the message `typeName`, each prefixed with its JSON path; empty when it is strictly valid. */
export function strictEnvoyProblems(typeName: string, json: unknown, options: StrictOptions = {}): string[] {
  return envoyJsonProblems(typeName, json, { deprecated: true, allowDeprecated: options.allowDeprecated });
}

/** Fails the test with every problem found (see strictEnvoyProblems). */
export function assertStrictEnvoyMessage(typeName: string, json: unknown, options: StrictOptions = {}): void {
  const problems = strictEnvoyProblems(typeName, json, options);
  assert.deepEqual(problems, [], `${typeName} is not strictly valid:\n  ${problems.join('\n  ')}`);
}

/** proto3 JSON -> the message's bytes, as the xDS server encodes resources. */
export function encodeEnvoyMessage(typeName: string, json: unknown): Uint8Array {
  return encodeEnvoyJson(typeName, json);
}
