/**
 * The Envoy SDS files of an identity directory (ENVOY_SDS_FILES): what the node agent writes
 * beside the PEMs, in the same version, and what a files-mode bootstrap's xds-grpc cluster reads
 * with `path_config_source` + `watched_directory`. Envoy re-reads a file when an entry of the
 * directory is moved to, as the agent's `..data` swap is; its content is the new certificate.
 */
import type { JsonObject } from '../../common/json';
import { TYPE_URL } from '../resources';
import { ENVOY_SDS_FILES, SDS_CERT_SECRET, SDS_ROOT_SECRET } from './contract';

export type EnvoySdsFile = (typeof ENVOY_SDS_FILES)[keyof typeof ENVOY_SDS_FILES];

/** One file per secret (Envoy takes exactly one resource per file-based secret). The first holds the key. */
export function envoySdsFiles(b: { certChainPem: string; keyPem: string; rootCertPem: string }): Record<EnvoySdsFile, string> {
  const response = (secret: JsonObject) => JSON.stringify({ resources: [{ '@type': TYPE_URL.secret, ...secret }] }) + '\n';
  return {
    [ENVOY_SDS_FILES.cert]: response({ name: SDS_CERT_SECRET, tls_certificate: { certificate_chain: { inline_string: b.certChainPem }, private_key: { inline_string: b.keyPem } } }),
    [ENVOY_SDS_FILES.root]: response({ name: SDS_ROOT_SECRET, validation_context: { trusted_ca: { inline_string: b.rootCertPem } } }),
  };
}

/** The SdsSecretConfig of one of those files, watching its directory (where the agent swaps `..data`). */
export function envoySdsFileSecret(dir: string, name: string, file: EnvoySdsFile): JsonObject {
  return { name, sds_config: { path_config_source: { path: `${dir}/${file}`, watched_directory: { path: dir } }, resource_api_version: 'V3' } };
}
