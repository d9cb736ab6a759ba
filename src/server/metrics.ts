import { Counter, Gauge, Registry } from 'prom-client';

/** Citadel's server metric names (ISTIO-FACTS.md), registered once per registry. */
export interface ServerMetrics {
  csrCount: Counter;
  authenticationFailureCount: Counter;
  csrParsingErrCount: Counter;
  idExtractionErrCount: Counter;
  csrSignErrCount: Counter<'error'>;
  successCertIssuanceCount: Counter;
  /** Ours: calls refused by the per-caller rate limit. */
  rateLimitedCount: Counter;
  /** Ours: node attestations by outcome. */
  nodeAttestationCount: Counter<'result'>;
  /** Ours: nodes with a feed (secrets or placements) open to this replica. */
  connectedNodes: Gauge;
}

export function serverMetrics(registry: Registry): ServerMetrics {
  const counter = <L extends string = string>(name: string, help: string, labelNames: L[] = []): Counter<L> =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter<L>({ name, help, labelNames, registers: [registry] });
  return {
    csrCount: counter('citadel_server_csr_count', 'The number of CSRs received by the Citadel server.'),
    authenticationFailureCount: counter('citadel_server_authentication_failure_count', 'The number of authentication failures.'),
    csrParsingErrCount: counter('citadel_server_csr_parsing_err_count', 'The number of errors occurred when parsing the CSR.'),
    idExtractionErrCount: counter('citadel_server_id_extraction_err_count', 'The number of errors occurred when extracting the ID from CSR.'),
    csrSignErrCount: counter('citadel_server_csr_sign_err_count', 'The number of errors occurred when signing the CSR.', ['error']),
    successCertIssuanceCount: counter('citadel_server_success_cert_issuance_count', 'The number of certificates issuances that have succeeded.'),
    rateLimitedCount: counter('citadel_server_rate_limited_count', 'The number of requests refused by the per-caller rate limit.'),
    nodeAttestationCount: counter('citadel_server_node_attestation_count', 'Node attestations by join token, by result.', ['result']),
    connectedNodes: (registry.getSingleMetric('citadel_server_connected_nodes') as Gauge | undefined) ?? new Gauge({ name: 'citadel_server_connected_nodes', help: 'Mesos agent nodes with a secret or placement feed open to this replica.', registers: [registry] }),
  };
}
