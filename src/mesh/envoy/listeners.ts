/**
 * Envoy listeners. Inbound: per service port, filter chains by the port's mTLS mode (STRICT: TLS
 * requiring a mesh client certificate; PERMISSIVE: tls_inspector picks a TLS or a plaintext
 * chain; DISABLE: plaintext), forwarding to `inbound|<port>||`. Outbound: per upstream, plaintext
 * from the app on 127.0.0.1 to the upstream's cluster (which originates the TLS).
 */
import type { JsonObject } from '../../common/json';
import { INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT } from '../bootstrap/contract';
import type { ServicePort } from '../model';
import {
  INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, inboundClusterName, inboundListenerName,
  inboundRouteName, outboundListenerName, outboundRouteName,
} from '../names';
import type { EffectiveMtlsMode } from '../policy';
import { isHttp } from '../protocols';
import { TYPE_URL, xdsResource, type XdsResource } from '../resources';
import { EXTENSION, httpConnectionManager, listenerFilter, socketAddress, tcpProxy } from './filters';
import { downstreamMtls, type CertSource } from './tls';

/** What an inbound chain hands the connection to: the app's port, or (redirect capture) the original destination. */
export type InboundTarget = { kind: 'port'; port: ServicePort } | { kind: 'passthrough' };

function inboundFilter(target: InboundTarget, mtls: boolean): JsonObject {
  if (target.kind === 'passthrough') return tcpProxy('inbound_passthrough', INBOUND_PASSTHROUGH_CLUSTER);
  const { port } = target;
  return isHttp(port.protocol)
    ? httpConnectionManager(`inbound_${port.port}`, inboundRouteName(port.port), mtls ? 'set' : 'strip')
    : tcpProxy(`inbound_${port.port}`, inboundClusterName(port.port));
}

/**
 * The filter chains for one inbound port under `mode`. `match` narrows them (virtualInbound
 * matches the original destination port); PERMISSIVE adds the transport protocol to it.
 */
export function inboundChains(mode: EffectiveMtlsMode, certs: CertSource, target: InboundTarget, match: JsonObject = {}): JsonObject[] {
  const label = target.kind === 'port' ? `inbound|${target.port.port}` : 'inbound|passthrough';
  const http = target.kind === 'port' && isHttp(target.port.protocol);
  const withMatch = (m: JsonObject): JsonObject => (Object.keys(m).length > 0 ? { filter_chain_match: m } : {});
  const mtls = (m: JsonObject): JsonObject => ({ name: `${label}|mtls`, ...withMatch(m), transport_socket: downstreamMtls(certs, http), filters: [inboundFilter(target, true)] });
  const plaintext = (m: JsonObject): JsonObject => ({ name: `${label}|plaintext`, ...withMatch(m), filters: [inboundFilter(target, false)] });
  switch (mode) {
    case 'STRICT':
      return [mtls(match)];
    case 'PERMISSIVE':
      return [mtls({ ...match, transport_protocol: 'tls' }), plaintext({ ...match, transport_protocol: 'raw_buffer' })];
    case 'DISABLE':
      return [plaintext(match)];
  }
}

/** Listener filters for chains that match on the transport protocol (PERMISSIVE) or the original destination (redirect capture). */
function listenerFilters(chains: readonly JsonObject[], originalDst: boolean): JsonObject {
  const sniff = chains.some((c) => (c.filter_chain_match as JsonObject | undefined)?.transport_protocol !== undefined);
  const filters = [...(originalDst ? [listenerFilter(EXTENSION.originalDst)] : []), ...(sniff ? [listenerFilter(EXTENSION.tlsInspector)] : [])];
  if (filters.length === 0) return {};
  // A server-first protocol sends nothing for tls_inspector to read: after the timeout, go on as plaintext.
  return { listener_filters: filters, ...(sniff && { continue_on_listener_filters_timeout: true }) };
}

/** Explicit capture: `inbound|<instanceIp>|<port>` bound there. */
export function inboundListener(instanceIp: string, port: number, chains: JsonObject[]): XdsResource {
  const name = inboundListenerName(instanceIp, port);
  return xdsResource(TYPE_URL.listener, name, {
    name,
    address: socketAddress(instanceIp, port),
    traffic_direction: 'INBOUND',
    ...listenerFilters(chains, false),
    filter_chains: chains,
  });
}

/** The network filter from the app to an upstream: HTTP routed by `outbound|<localPort>`, else TCP straight to the cluster. */
export function outboundFilter(localPort: number, port: ServicePort, cluster: string): JsonObject {
  return isHttp(port.protocol)
    ? httpConnectionManager(`outbound_${localPort}`, outboundRouteName(localPort), 'none')
    : tcpProxy(`outbound_${localPort}`, cluster);
}

/** `outbound|127.0.0.1|<localPort>`: where the app dials the upstream. */
export function outboundListener(localPort: number, port: ServicePort, cluster: string): XdsResource {
  const name = outboundListenerName(localPort);
  return xdsResource(TYPE_URL.listener, name, {
    name,
    address: socketAddress('127.0.0.1', localPort),
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ filters: [outboundFilter(localPort, port, cluster)] }],
  });
}

/** Redirect capture, 0.0.0.0:15006: chains per service port (matched on the original destination port), then the passthrough's. */
export function virtualInboundListener(chains: JsonObject[]): XdsResource {
  return xdsResource(TYPE_URL.listener, VIRTUAL_INBOUND, {
    name: VIRTUAL_INBOUND,
    address: socketAddress('0.0.0.0', INBOUND_CAPTURE_PORT),
    traffic_direction: 'INBOUND',
    ...listenerFilters(chains, true),
    filter_chains: chains,
  });
}

/**
 * Redirect capture, 0.0.0.0:15001: a chain per upstream matched on the original destination
 * (its healthy endpoints' addresses and ports); anything else passes through untouched.
 */
export function virtualOutboundListener(chains: JsonObject[]): XdsResource {
  return xdsResource(TYPE_URL.listener, VIRTUAL_OUTBOUND, {
    name: VIRTUAL_OUTBOUND,
    address: socketAddress('0.0.0.0', OUTBOUND_CAPTURE_PORT),
    traffic_direction: 'OUTBOUND',
    ...listenerFilters(chains, true),
    filter_chains: chains,
    default_filter_chain: { name: 'passthrough', filters: [tcpProxy('passthrough', PASSTHROUGH_CLUSTER)] },
  });
}
