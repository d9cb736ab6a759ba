import { isIPv4 } from 'node:net';
import {
  INBOUND_CAPTURE_PORT, LABEL, OUTBOUND_CAPTURE_PORT, PROXY_GID, PROXY_UID, type CaptureMode,
} from '../mesh/bootstrap/contract';

/** What redirect capture sends to the proxy, from the pod's endpoints and Istio's traffic.sidecar.istio.io labels. */
export interface CaptureRules {
  /** inbound ports redirected to 15006: the endpoints' container ports, or all ('*') */
  inboundPorts: '*' | number[];
  excludeInboundPorts: number[];
  /** outbound destinations redirected to 15001 ('*' = all) */
  includeOutboundIpRanges: '*' | string[];
  excludeOutboundIpRanges: string[];
  excludeOutboundPorts: number[];
}

/** A label with a bad value; `label` names it, so the error can point at `/labels/<label>`. */
export class LabelError extends Error {
  constructor(readonly label: string, reason: string) {
    super(reason);
    this.name = 'LabelError';
  }
}

/** The capture mode: the label citadel.io/capture, else the namespace's setting. */
export function captureModeOf(labels: Record<string, string>, fallback: CaptureMode): CaptureMode {
  const v = labels[LABEL.capture];
  if (v === undefined) return fallback;
  if (v !== 'explicit' && v !== 'redirect') throw new LabelError(LABEL.capture, `"${v}" is neither explicit nor redirect`);
  return v;
}

function portList(labels: Record<string, string>, label: string, allowStar: boolean): '*' | number[] | undefined {
  const v = labels[label];
  if (v === undefined) return undefined;
  const text = v.trim();
  if (allowStar && text === '*') return '*';
  if (text === '') return [];
  return text.split(',').map((p) => {
    const n = Number(p.trim());
    if (!/^\d+$/.test(p.trim()) || n < 1 || n > 65535) throw new LabelError(label, `"${p.trim()}" is not a port (comma-separated ports${allowStar ? ', or *' : ''})`);
    return n;
  });
}

function cidrList(labels: Record<string, string>, label: string, allowStar: boolean): '*' | string[] | undefined {
  const v = labels[label];
  if (v === undefined) return undefined;
  const text = v.trim();
  if (allowStar && text === '*') return '*';
  if (text === '') return [];
  return text.split(',').map((c) => {
    const s = c.trim();
    const [ip, bits, extra] = s.split('/');
    const okBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= 32);
    if (extra !== undefined || !isIPv4(ip) || !okBits) throw new LabelError(label, `"${s}" is not an IPv4 CIDR (comma-separated, e.g. 10.0.0.0/8${allowStar ? ', or *' : ''})`);
    return s;
  });
}

const unique = (ports: number[]) => [...new Set(ports)];

/**
 * The rules for a pod: inbound are its endpoints' container ports unless includeInboundPorts
 * says otherwise; `alwaysExcluded` (the Mesos agent's and citadel's ports, the admin port) are
 * never redirected either way.
 */
export function captureRulesOf(labels: Record<string, string>, containerPorts: number[], alwaysExcluded: number[]): CaptureRules {
  const inbound = portList(labels, LABEL.includeInboundPorts, true) ?? unique(containerPorts);
  const excludeInbound = unique([...alwaysExcluded, ...((portList(labels, LABEL.excludeInboundPorts, false) as number[] | undefined) ?? [])]);
  return {
    inboundPorts: inbound === '*' ? '*' : inbound.filter((p) => !excludeInbound.includes(p)),
    excludeInboundPorts: excludeInbound,
    includeOutboundIpRanges: cidrList(labels, LABEL.includeOutboundIpRanges, true) ?? '*',
    excludeOutboundIpRanges: (cidrList(labels, LABEL.excludeOutboundIpRanges, false) as string[] | undefined) ?? [],
    excludeOutboundPorts: unique([...alwaysExcluded, ...((portList(labels, LABEL.excludeOutboundPorts, false) as number[] | undefined) ?? [])]),
  };
}

/** The script's arguments (Istio's istio-iptables letters) for `rules`. */
export function captureArgs(rules: CaptureRules): string[] {
  const list = (v: '*' | Array<number | string>) => (v === '*' ? '*' : v.join(','));
  return [
    '-p', String(OUTBOUND_CAPTURE_PORT), '-z', String(INBOUND_CAPTURE_PORT), '-u', String(PROXY_UID), '-g', String(PROXY_GID),
    '-b', list(rules.inboundPorts), '-d', list(rules.excludeInboundPorts),
    '-i', list(rules.includeOutboundIpRanges), '-x', list(rules.excludeOutboundIpRanges), '-o', list(rules.excludeOutboundPorts),
  ];
}
