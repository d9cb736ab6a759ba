/**
 * The discovery services (SDS, ADS, CDS, EDS, LDS, RDS) as method definitions: paths from the
 * protos' service definitions (Envoy's official v3, our v2 for SDS), messages through the hand
 * codec of ./discovery.
 */
import type { MethodDefinition } from '@grpc/grpc-js';
import type * as protobuf from 'protobufjs';
import { DISCOVERY_REQUEST_FIELDS, DiscoveryRequest, DiscoveryResponse, discoveryCodec } from './discovery';
import type { GrpcMethodDefinition } from './grpc/server';
import { envoyProtoRoot } from './envoy-protos';

/** A response as a client reads it: each resource's Any type URL and message bytes. */
export type ReceivedDiscoveryResponse = ReturnType<typeof discoveryCodec.DiscoveryResponse.decode>;

/** A discovery method; its requests keep only the fields the codec reads as they arrive (a real Envoy's first one is ~60 KB, nearly all node extensions). */
export function discoveryMethod(service: protobuf.Service, name: string, stream: boolean): GrpcMethodDefinition<DiscoveryRequest, DiscoveryResponse> {
  const m = service.methods[name];
  if (!m) throw new Error(`${service.fullName} has no method ${name}`);
  return {
    path: `/${service.fullName.slice(1)}/${m.name}`,
    requestFieldPlan: DISCOVERY_REQUEST_FIELDS,
    requestStream: stream,
    responseStream: stream,
    requestSerialize: (r: DiscoveryRequest) => discoveryCodec.DiscoveryRequest.encode(r),
    requestDeserialize: (b: Buffer) => discoveryCodec.DiscoveryRequest.decode(b),
    responseSerialize: (r: DiscoveryResponse) => discoveryCodec.DiscoveryResponse.encode(r),
    // Clients (tests, benchmarks) read the Any's themselves: see ReceivedDiscoveryResponse.
    responseDeserialize: (b: Buffer) => discoveryCodec.DiscoveryResponse.decode(b) as unknown as DiscoveryResponse,
  };
}

/** The state-of-the-world streaming methods of the xDS services: ADS and the four separate ones, by the type each carries (undefined: ADS, any type). */
export function xdsStreamMethods(): Array<{ method: MethodDefinition<DiscoveryRequest, DiscoveryResponse>; typeUrl?: string }> {
  const root = envoyProtoRoot();
  const svc = (name: string) => root.lookupService(name);
  const t = (name: string) => `type.googleapis.com/${name}`;
  return [
    { method: discoveryMethod(svc('envoy.service.discovery.v3.AggregatedDiscoveryService'), 'StreamAggregatedResources', true) },
    { method: discoveryMethod(svc('envoy.service.cluster.v3.ClusterDiscoveryService'), 'StreamClusters', true), typeUrl: t('envoy.config.cluster.v3.Cluster') },
    { method: discoveryMethod(svc('envoy.service.endpoint.v3.EndpointDiscoveryService'), 'StreamEndpoints', true), typeUrl: t('envoy.config.endpoint.v3.ClusterLoadAssignment') },
    { method: discoveryMethod(svc('envoy.service.listener.v3.ListenerDiscoveryService'), 'StreamListeners', true), typeUrl: t('envoy.config.listener.v3.Listener') },
    { method: discoveryMethod(svc('envoy.service.route.v3.RouteDiscoveryService'), 'StreamRoutes', true), typeUrl: t('envoy.config.route.v3.RouteConfiguration') },
  ];
}
