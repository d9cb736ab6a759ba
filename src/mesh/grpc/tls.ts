/**
 * TLS for proxyless gRPC (gRFC A29 as grpc-js-xds 1.14 reads it): certificates from the
 * bootstrap's `default` file_watcher provider, never SDS (NACKed); the client checks the server's
 * SPIFFE ID with the deprecated `match_subject_alt_names`, the only one 1.14 reads.
 */
import type { JsonObject } from '../../common/json';
import { GRPC_CERT_PROVIDER, SDS_CERT_SECRET, SDS_ROOT_SECRET } from '../bootstrap/contract';
import { EXTENSION } from '../envoy/filters';
import { sanMatcher } from '../envoy/tls';

/** certificate_name is ignored by grpc-js; Istio's names say which half of the provider is meant. */
const provider = (certificateName: string): JsonObject => ({ instance_name: GRPC_CERT_PROVIDER, certificate_name: certificateName });

/** Server side under STRICT: a client certificate from the mesh root required. */
export function grpcServerMtls(): JsonObject {
  return {
    name: EXTENSION.tls.name,
    typed_config: {
      '@type': EXTENSION.tls.downstream,
      common_tls_context: {
        tls_certificate_provider_instance: provider(SDS_CERT_SECRET),
        validation_context: { ca_certificate_provider_instance: provider(SDS_ROOT_SECRET) },
      },
      require_client_certificate: true,
    },
  };
}

/**
 * Client side, ISTIO_MUTUAL: the deprecated matcher for grpc-js-xds 1.14, the typed one beside it
 * for clients that read it (both say the same).
 */
export function grpcClientMtls(subjectAltNames: readonly string[], sni: string): JsonObject {
  return {
    name: EXTENSION.tls.name,
    typed_config: {
      '@type': EXTENSION.tls.upstream,
      common_tls_context: {
        tls_certificate_provider_instance: provider(SDS_CERT_SECRET),
        combined_validation_context: {
          default_validation_context: {
            ca_certificate_provider_instance: provider(SDS_ROOT_SECRET),
            match_subject_alt_names: subjectAltNames.map((exact) => ({ exact })),
            match_typed_subject_alt_names: subjectAltNames.map(sanMatcher),
          },
        },
      },
      sni,
    },
  };
}
