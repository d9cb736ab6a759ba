/** RouteConfigurations: one per HTTP listener, everything to its one cluster. */
import { TYPE_URL, xdsResource, type XdsResource } from '../resources';

/** Every path to `cluster`; no route timeout (Envoy's default 15 s would cut gRPC streams and long polls). */
export function routeToCluster(name: string, cluster: string): XdsResource {
  return xdsResource(TYPE_URL.route, name, {
    name,
    virtual_hosts: [{ name, domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster, timeout: '0s' } }] }],
  });
}
