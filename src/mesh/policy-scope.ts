/**
 * One policy version as the generators consult it: each workload's mTLS mode per port and each
 * client's TLS per destination port, resolved once and reused until the policies change.
 */
import { clientTlsKey, decideClientTls, type ClientTls } from './client-tls';
import type { MeshService, ServicePort } from './model';
import { resolvePeerMtls, type EffectiveMtlsMode, type PolicyDocument, type PolicyWorkload } from './policy';
import type { MeshInputs } from './resources';

export function policyWorkloadOf(s: MeshService): PolicyWorkload {
  return {
    namespace: s.namespace,
    labels: s.labels,
    serviceNames: [s.marathonId, s.dnsName],
    ports: s.ports.map((p) => (p.name === undefined ? { number: p.port } : { number: p.port, name: p.name })),
  };
}

export class PolicyScope {
  private readonly modes = new WeakMap<MeshService, Map<number, EffectiveMtlsMode>>();
  private readonly clientTlsByDestination = new WeakMap<MeshService, Map<string, { tls: ClientTls; key: string }>>();

  constructor(
    readonly policies: readonly PolicyDocument[],
    readonly trustDomain: string,
    readonly rootNamespace: string,
  ) {}

  static of(inputs: MeshInputs): PolicyScope {
    return new PolicyScope(inputs.policies, inputs.trustDomain, inputs.rootNamespace);
  }

  /** Whether these inputs carry the same policy version (the same array) and mesh settings. */
  fits(inputs: MeshInputs): boolean {
    return inputs.policies === this.policies && inputs.trustDomain === this.trustDomain && inputs.rootNamespace === this.rootNamespace;
  }

  /** What the service's sidecar accepts on `port` (0: a port the service does not declare). */
  peerMode(service: MeshService, port: number): EffectiveMtlsMode {
    let byPort = this.modes.get(service);
    if (byPort === undefined) this.modes.set(service, (byPort = new Map()));
    let mode = byPort.get(port);
    if (mode === undefined) {
      mode = resolvePeerMtls(this.policies, policyWorkloadOf(service), port, { rootNamespace: this.rootNamespace });
      byPort.set(port, mode);
    }
    return mode;
  }

  /** The TLS a client in `clientNamespace` originates to `destination` at `port`, and its canonical key. */
  clientTls(clientNamespace: string, destination: MeshService, port: ServicePort): { tls: ClientTls; key: string } {
    let byClient = this.clientTlsByDestination.get(destination);
    if (byClient === undefined) this.clientTlsByDestination.set(destination, (byClient = new Map()));
    const k = `${clientNamespace}|${port.port}`;
    let found = byClient.get(k);
    if (found === undefined) {
      const tls = decideClientTls({
        policies: this.policies,
        trustDomain: this.trustDomain,
        clientNamespace,
        destination,
        port,
        destinationMode: this.peerMode(destination, port.port),
      });
      found = { tls, key: clientTlsKey(tls) };
      byClient.set(k, found);
    }
    return found;
  }
}
