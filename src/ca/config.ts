import { KeyAlgorithm } from '../pki/keys';

/** Signing policy and root settings, named after Citadel's flags. */
export interface CaConfig {
  /** `--trust-domain` (default cluster.local). */
  trustDomain: string;
  /** Key type of a generated root and of workload keys the CA generates itself. */
  keyAlgorithm: KeyAlgorithm;
  /** `--workload-cert-ttl`: used when a caller asks for no TTL or a non-positive one. */
  workloadCertTtlMs: number;
  /** `--max-workload-cert-ttl`: a request above it is refused (TTL_ERROR). */
  maxWorkloadCertTtlMs: number;
  /** `--self-signed-ca-cert-ttl`. */
  selfSignedCaCertTtlMs: number;
  /** notBefore is back-dated by this much for clocks running behind ours. */
  clockSkewMs: number;
  /** A plugged-in CA (`--signing-cert --signing-key --root-cert --cert-chain`); absent = self-signed. */
  plugged?: PluggedCaFiles;
}

export interface PluggedCaFiles {
  signingCert: string;
  signingKey: string;
  rootCert: string;
  certChain?: string;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Today's Istio defaults: workload 24h, max 90d, root 10 years. */
export const DEFAULT_CA_CONFIG: CaConfig = {
  trustDomain: 'cluster.local',
  keyAlgorithm: 'ec-p256',
  workloadCertTtlMs: 24 * HOUR,
  maxWorkloadCertTtlMs: 90 * DAY,
  selfSignedCaCertTtlMs: 3650 * DAY,
  clockSkewMs: 60_000,
};
