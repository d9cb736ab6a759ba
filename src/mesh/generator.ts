/**
 * The one generator the xDS server holds: Envoy sidecars and proxyless gRPC nodes, with the
 * ClusterLoadAssignments (the same for both) built once for all of them.
 *
 *   const generator = new MeshGenerator();
 *   generator.generate({ snapshot, policies, trustDomain, rootNamespace }, node, subscribedNames);
 */
import { LoadAssignments } from './endpoints';
import { EnvoyGenerator } from './envoy/generator';
import { GrpcGenerator, type GrpcResourceNames } from './grpc/generator';
import type { ProxyNode } from './model';
import type { GeneratedResources, MeshInputs } from './resources';

export class MeshGenerator {
  readonly envoy: EnvoyGenerator;
  readonly grpc: GrpcGenerator;

  constructor() {
    const assignments = new LoadAssignments();
    this.envoy = new EnvoyGenerator(assignments);
    this.grpc = new GrpcGenerator(assignments);
  }

  /**
   * Envoy nodes get everything they need (they ask for CDS and LDS by wildcard, then EDS and RDS
   * by the names in those). gRPC nodes get the resources named in `grpcNames` (what their
   * streams subscribed to), or grpcDefaultNames when absent.
   */
  generate(inputs: MeshInputs, proxy: ProxyNode, grpcNames?: GrpcResourceNames): GeneratedResources {
    return proxy.generator === 'envoy' ? this.envoy.generate(inputs, proxy) : this.grpc.generate(inputs, proxy, grpcNames);
  }

  /** Drops what is kept for a node whose stream ended. */
  forget(proxyId: string): void {
    this.envoy.forget(proxyId);
    this.grpc.forget(proxyId);
  }
}
