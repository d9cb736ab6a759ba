/** Server side: the mTLS mode a workload's sidecar enforces on an inbound port, resolved as Istio does. */
import {
  DEFAULT_POLICY_NAME,
  type EffectiveMtlsMode,
  type Labels,
  type PeerMtlsMode,
  type PolicyDocument,
  type TargetSelector,
} from './documents';
import { oldest } from './precedence';

/** Istio's default root namespace: PeerAuthentications there without a selector are mesh-wide. */
export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

export interface WorkloadPort {
  readonly number: number;
  /** The Marathon port name, which a Policy target may select by. */
  readonly name?: string;
}

/** A Marathon app or pod as policies see it. */
export interface PolicyWorkload {
  readonly namespace: string;
  /** Marathon app/pod labels: what PeerAuthentication selectors match. */
  readonly labels: Labels;
  /** Its Marathon id (/prod/payments/api) and Mesos-DNS name (api-payments-prod.marathon.mesos): what Policy targets name. */
  readonly serviceNames: readonly string[];
  readonly ports?: readonly WorkloadPort[];
}

export interface ResolveOptions {
  /** Default `istio-system`. */
  readonly rootNamespace?: string;
}

/**
 * Workload scope (a Policy targeting the workload and port, a PeerAuthentication selecting it, with
 * its portLevelMtls) over namespace scope (Policy `default`, a PeerAuthentication without selector)
 * over mesh scope (MeshPolicy `default`, a PeerAuthentication without selector in the root
 * namespace). The oldest wins within a scope; UNSET inherits; nothing at all is PERMISSIVE.
 */
export function resolvePeerMtls(
  policies: readonly PolicyDocument[],
  workload: PolicyWorkload,
  port: number,
  options: ResolveOptions = {},
): EffectiveMtlsMode {
  const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const mesh: PolicyDocument[] = [];
  const namespace: PolicyDocument[] = [];
  const selected: PolicyDocument[] = [];
  for (const doc of policies) {
    switch (doc.kind) {
      case 'MeshPolicy':
        if (doc.metadata.name === DEFAULT_POLICY_NAME) mesh.push(doc);
        break;
      case 'Policy':
        if (doc.metadata.namespace !== workload.namespace) break;
        if (doc.spec.targets.length === 0) namespace.push(doc);
        else if (doc.spec.targets.some((t) => targets(t, workload, port))) selected.push(doc);
        break;
      case 'PeerAuthentication':
        if (doc.spec.selector === undefined) {
          if (doc.metadata.namespace === root) mesh.push(doc);
          else if (doc.metadata.namespace === workload.namespace) namespace.push(doc);
        } else if (doc.metadata.namespace !== root && doc.metadata.namespace === workload.namespace && selects(doc.spec.selector, workload.labels)) {
          // Istio ignores selectors in the root namespace.
          selected.push(doc);
        }
        break;
      case 'DestinationRule':
        break;
    }
  }
  let mode: EffectiveMtlsMode = 'PERMISSIVE';
  for (const scope of [mesh, namespace, selected]) {
    const winner = oldest(scope);
    if (winner === undefined) continue;
    const m = modeOf(winner, port, mode);
    if (m !== 'UNSET') mode = m;
  }
  return mode;
}

/** A scope's winner's mode at the port; UNSET (or a port UNSET) falls back to what is inherited. */
function modeOf(doc: PolicyDocument, port: number, inherited: EffectiveMtlsMode): PeerMtlsMode {
  switch (doc.kind) {
    case 'MeshPolicy':
    case 'Policy':
      return doc.spec.peerMtls ?? 'DISABLE';
    case 'PeerAuthentication': {
      const base = doc.spec.mtls === 'UNSET' ? inherited : doc.spec.mtls;
      const atPort = doc.spec.portLevelMtls.find((p) => p.port === port)?.mode;
      return atPort === undefined || atPort === 'UNSET' ? base : atPort;
    }
    case 'DestinationRule':
      return 'UNSET';
  }
}

function targets(target: TargetSelector, workload: PolicyWorkload, port: number): boolean {
  if (!workload.serviceNames.includes(target.name)) return false;
  if (target.ports.length === 0) return true;
  const portName = workload.ports?.find((p) => p.number === port)?.name;
  return target.ports.some((s) => ('number' in s ? s.number === port : portName !== undefined && s.name === portName));
}

function selects(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => Object.prototype.hasOwnProperty.call(labels, k) && labels[k] === v);
}
