/**
 * Strict checks of generated Envoy configuration against Envoy's own .proto files, through the
 * same proto3-JSON walker the xDS server encodes with (src/api/envoy-protos.ts), plus deprecated
 * fields and enum values: every field must exist in its message, carry the right JSON type, not be
 * deprecated, set at most one member of a oneof; every Any must name a loaded type and is checked
 * the same way, recursively.
 *
 *   assertStrictEnvoyMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrap);
 *   assertStrictEnvoyMessage('envoy.config.listener.v3.Listener', listener);
 */
import assert from 'node:assert/strict';
import { envoyJsonProblems, envoyProtoRoot, ENVOY_PROTO_FILES } from '../../src/api/envoy-protos';

export { envoyProtoRoot, ENVOY_PROTO_FILES };

/** Every problem found in `json` as the message `typeName`, each prefixed with its JSON path; empty when it is strictly valid. */
export function strictEnvoyProblems(typeName: string, json: unknown): string[] {
  return envoyJsonProblems(typeName, json, { deprecated: true });
}

/** Fails the test with every problem found (see strictEnvoyProblems). */
export function assertStrictEnvoyMessage(typeName: string, json: unknown): void {
  const problems = strictEnvoyProblems(typeName, json);
  assert.deepEqual(problems, [], `${typeName} is not strictly valid:\n  ${problems.join('\n  ')}`);
}
