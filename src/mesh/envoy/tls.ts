/**
 * TLS contexts of an Envoy sidecar: the workload certificate and the mesh root as SDS secrets,
 * as the proxy's certMode says: `default` and `ROOTCA` from the node agent (cluster sds-grpc), or,
 * in files mode, `file-cert:...` and `file-root:...` over ADS, which name the files under
 * /etc/certs (or the directory the proxy's bootstrap names) for Envoy to read and watch
 * (./secrets.ts). DestinationRule files for SIMPLE and MUTUAL are read as they are.
 */
import { isIP } from 'node:net';
import type { JsonObject } from '../../common/json';
import { CERTS_MOUNT_PATH, SDS_CERT_SECRET, SDS_CLUSTER, SDS_ROOT_SECRET } from '../bootstrap/contract';
import type { ClientTls } from '../client-tls';
import type { ProxyNode } from '../model';
import { ADS_SOURCE, EXTENSION } from './filters';
import { fileSecretNames } from './secrets';

/** Where a sidecar's TLS contexts take the workload certificate and the root from. */
export type CertSource = { readonly mode: 'sds' } | { readonly mode: 'files'; readonly dir: string };

export function certSourceOf(proxy: ProxyNode): CertSource {
  return proxy.certMode === 'sds' ? { mode: 'sds' } : { mode: 'files', dir: proxy.certsDir ?? CERTS_MOUNT_PATH };
}

/** The memo key part for a CertSource: resources that name files differ per directory. */
export function certSourceKey(s: CertSource): string {
  return s.mode === 'sds' ? 'sds' : `files:${s.dir}`;
}

/**
 * Byte-identical everywhere: Envoy opens one SDS stream per secret name per distinct
 * SdsSecretConfig (envoy-research section 1), so any difference would open more streams.
 */
export const SDS_CONFIG: JsonObject = {
  api_config_source: {
    api_type: 'GRPC',
    transport_api_version: 'V3',
    // The agent is a local socket: retry it every 50-200 ms, not Envoy's 0.5-30 s, so a restarted agent serves Envoy within a second.
    grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER, retry_policy: { retry_back_off: { base_interval: '0.05s', max_interval: '0.2s' } } } }],
    set_node_on_first_message_only: true,
  },
  initial_fetch_timeout: '0s',
  resource_api_version: 'V3',
};

/** The SdsSecretConfigs of the workload certificate and the mesh root; files mode's come over ADS (one config, as everywhere). */
function secretConfigs(certs: CertSource): { cert: JsonObject; root: JsonObject } {
  if (certs.mode === 'sds') return { cert: { name: SDS_CERT_SECRET, sds_config: SDS_CONFIG }, root: { name: SDS_ROOT_SECRET, sds_config: SDS_CONFIG } };
  const names = fileSecretNames(certs.dir);
  return { cert: { name: names.cert, sds_config: ADS_SOURCE }, root: { name: names.root, sds_config: ADS_SOURCE } };
}

/** The workload certificate, as common_tls_context fields. */
function workloadCertificate(certs: CertSource): JsonObject {
  return { tls_certificate_sds_secret_configs: [secretConfigs(certs).cert] };
}

/** The mesh root, plus any SAN matchers, as common_tls_context fields. */
function meshRootValidation(certs: CertSource, sanMatchers: JsonObject[]): JsonObject {
  const root = secretConfigs(certs).root;
  if (sanMatchers.length === 0) return { validation_context_sds_secret_config: root };
  return { combined_validation_context: { default_validation_context: { match_typed_subject_alt_names: sanMatchers }, validation_context_sds_secret_config: root } };
}

/** A SAN as Envoy matches it: URIs (SPIFFE IDs) by URI, IP literals by IP, anything else by DNS. */
export function sanMatcher(san: string): JsonObject {
  const sanType = /^[a-z][a-z0-9+.-]*:/i.test(san) ? 'URI' : isIP(san) !== 0 ? 'IP_ADDRESS' : 'DNS';
  return { san_type: sanType, matcher: { exact: san } };
}

/**
 * The server side of mTLS: the workload certificate, any client certificate from the mesh root
 * required. HTTP ports offer h2 and http/1.1 (a client offering only `istio` gets HTTP/1.1).
 */
export function downstreamMtls(certs: CertSource, http: boolean): JsonObject {
  return {
    name: EXTENSION.tls.name,
    typed_config: {
      '@type': EXTENSION.tls.downstream,
      common_tls_context: {
        ...workloadCertificate(certs),
        ...meshRootValidation(certs, []),
        ...(http && { alpn_protocols: ['h2', 'http/1.1'] }),
      },
      require_client_certificate: true,
    },
  };
}

/** The client side, for a decision other than plaintext. ALPN `istio` (+ h2 on HTTP/2 ports) as Istio's sidecars offer. */
export function upstreamTls(tls: Exclude<ClientTls, { kind: 'plaintext' }>, certs: CertSource, http2: boolean): JsonObject {
  let common: JsonObject;
  if (tls.kind === 'istio-mutual') {
    common = {
      ...workloadCertificate(certs),
      ...meshRootValidation(certs, tls.subjectAltNames.map(sanMatcher)),
      alpn_protocols: http2 ? ['istio', 'h2'] : ['istio'],
    };
  } else {
    const matchers = tls.subjectAltNames.map(sanMatcher);
    const validation =
      tls.caCertificates !== undefined
        ? { validation_context: { trusted_ca: { filename: tls.caCertificates }, ...(matchers.length > 0 && { match_typed_subject_alt_names: matchers }) } }
        : meshRootValidation(certs, matchers);
    common = {
      ...(tls.kind === 'mutual' && { tls_certificates: [{ certificate_chain: { filename: tls.clientCertificate ?? '' }, private_key: { filename: tls.privateKey ?? '' } }] }),
      ...validation,
      ...(http2 && { alpn_protocols: ['h2'] }),
    };
  }
  return {
    name: EXTENSION.tls.name,
    typed_config: { '@type': EXTENSION.tls.upstream, common_tls_context: common, sni: tls.sni },
  };
}
