/**
 * The names a proxyless gRPC node asks for. grpc-js-xds asks for everything by name (no
 * wildcard): the Listener named by the channel target's path, the Clusters its routes name, the
 * ClusterLoadAssignments of those, and, for a server, the Listener of its bootstrap template.
 *
 * Client targets (the Listener name is the target without `xds:///`):
 *   xds:///<dnsName>:<port>                     api-payments-prod.marathon.mesos:8080
 *   xds:///<Marathon id without the slash>:<port>   prod/payments/api:8080
 * The port is one the service declares (ServicePort.port), and is required. Both names route to
 * the Cluster `outbound|<port>||<dnsName>`.
 * Server: `xds.istio.io/grpc/lds/inbound/<ip>:<port>` (`[v6]:<port>`), the address it binds.
 */
import { isIP } from 'node:net';
import type { MeshService, MeshSnapshot, ServicePort } from '../model';
import { GRPC_SERVER_LISTENER_PREFIX } from '../names';

/** The Listener names a client may use for one service port. */
export function grpcClientListenerNames(service: MeshService, port: number): string[] {
  return [`${service.dnsName}:${port}`, `${service.marathonId.replace(/^\/+/, '')}:${port}`];
}

export type GrpcListenerName =
  | { readonly kind: 'server'; readonly ip: string; readonly port: number }
  | { readonly kind: 'client'; readonly host: string; readonly port: number };

export function parseGrpcListenerName(name: string): GrpcListenerName | undefined {
  if (name.startsWith(GRPC_SERVER_LISTENER_PREFIX)) {
    const address = name.slice(GRPC_SERVER_LISTENER_PREFIX.length);
    const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(address) ?? /^([^:[\]]+):(\d{1,5})$/.exec(address);
    const port = m ? Number(m[2]) : 0;
    if (!m || isIP(m[1]) === 0 || !(port >= 1 && port <= 65535)) return undefined;
    return { kind: 'server', ip: m[1], port };
  }
  const m = /^(.+):(\d{1,5})$/.exec(name);
  const port = m ? Number(m[2]) : 0;
  if (!m || !(port >= 1 && port <= 65535)) return undefined;
  return { kind: 'client', host: m[1], port };
}

/** The service a client target's host names: a Mesos-DNS name, or a Marathon id given without its leading slash. */
export function lookupTargetHost(snapshot: MeshSnapshot, host: string): MeshService | undefined {
  return snapshot.lookup(host) ?? (host.startsWith('/') ? undefined : snapshot.lookup(`/${host}`));
}

export function servicePort(service: MeshService, port: number): ServicePort | undefined {
  return service.ports.find((p) => p.port === port);
}
