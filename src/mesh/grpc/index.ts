/** Proxyless gRPC (grpc-js-xds) configuration from (mesh, policy, node, requested names): see generator.ts and names.ts. */
export { GrpcGenerator, generateGrpc, grpcDefaultNames, type GrpcResourceNames } from './generator';
export { grpcClientListenerNames, parseGrpcListenerName } from './names';
