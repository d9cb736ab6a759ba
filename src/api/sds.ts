/**
 * Envoy's Secret Discovery Service as the node agent serves it: v3 from Envoy's official protos
 * (loaded from @grpc/grpc-js-xds, never copied) and v2 from our small protos under ./proto/envoy
 * (Istio 1.1-era proxies). The two agree on the wire; only the service name and the Secret's type
 * URL differ. Discovery messages go through the hand codec (./discovery); Secrets are encoded
 * with protobufjs from the official types, once per certificate.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import type { DiscoveryRequest, DiscoveryResponse } from './discovery';
import { discoveryMethod } from './discovery-services';
import type { GrpcMethodDefinition } from './grpc/server';
import { envoyProtoRoot, SDS_PROTO_FILES, TYPE_URL_PREFIX } from './envoy-protos';
import { GOOGLEAPIS_PROTO_DIR, PROTO_DIR } from './protos';

export type SdsApiVersion = 'v3' | 'v2';

export const SECRET_TYPE_URL: Record<SdsApiVersion, string> = {
  v3: `${TYPE_URL_PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`,
  v2: `${TYPE_URL_PREFIX}envoy.api.v2.auth.Secret`,
};

let v2Root: protobuf.Root | undefined;

/** Our v2 protos (SDS's subset of Envoy's v2 API), with google's well-known types. */
export function sdsV2ProtoRoot(): protobuf.Root {
  if (v2Root) return v2Root;
  const dirs = [PROTO_DIR, GOOGLEAPIS_PROTO_DIR, path.dirname(require.resolve('protobufjs/package.json'))];
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => dirs.map((d) => path.join(d, target)).find((p) => fs.existsSync(p)) ?? target;
  r.loadSync(['envoy/service/discovery/v2/sds.proto', 'envoy/api/v2/auth/secret.proto'], { keepCase: true });
  r.resolveAll();
  v2Root = r;
  return r;
}

export interface SdsService {
  version: SdsApiVersion;
  StreamSecrets: GrpcMethodDefinition<DiscoveryRequest, DiscoveryResponse>;
  FetchSecrets: GrpcMethodDefinition<DiscoveryRequest, DiscoveryResponse>;
}

/** The two SDS services with their method paths, as the protos name them. */
export function sdsServices(): SdsService[] {
  return (
    [
      ['v3', envoyProtoRoot(SDS_PROTO_FILES).lookupService('envoy.service.secret.v3.SecretDiscoveryService')],
      ['v2', sdsV2ProtoRoot().lookupService('envoy.service.discovery.v2.SecretDiscoveryService')],
    ] as const
  ).map(([version, service]) => ({ version, StreamSecrets: discoveryMethod(service, 'StreamSecrets', true), FetchSecrets: discoveryMethod(service, 'FetchSecrets', false) }));
}

/** Secret encoders; v2's Secret has the same field numbers, so one encoding serves both API versions. */
function secretType(): protobuf.Type {
  return envoyProtoRoot(SDS_PROTO_FILES).lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
}

/** `Secret{name, tls_certificate{certificate_chain, private_key}}` with the PEMs inline. */
export function encodeTlsCertificateSecret(name: string, certChainPem: string, keyPem: string): Buffer {
  const t = secretType();
  return Buffer.from(t.encode(t.fromObject({ name, tls_certificate: { certificate_chain: { inline_bytes: Buffer.from(certChainPem) }, private_key: { inline_bytes: Buffer.from(keyPem) } } })).finish());
}

/** `Secret{name, validation_context{trusted_ca}}` with the root(s) inline. */
export function encodeValidationContextSecret(name: string, rootCertPem: string): Buffer {
  const t = secretType();
  return Buffer.from(t.encode(t.fromObject({ name, validation_context: { trusted_ca: { inline_bytes: Buffer.from(rootCertPem) } } })).finish());
}
