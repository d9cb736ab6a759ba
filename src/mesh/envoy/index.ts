/** Envoy sidecar configuration from (mesh, policy, proxy): see generator.ts. */
export { EnvoyGenerator, generateEnvoy, type GeneratorStats } from './generator';
export { SDS_CONFIG } from './tls';
