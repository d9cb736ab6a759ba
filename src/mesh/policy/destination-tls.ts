/** Client side: the TLS a sidecar originates towards a destination, from the DestinationRule Istio would pick. */
import type { ClientTlsSettings, DestinationRule, PolicyDocument } from './documents';
import { olderFirst } from './precedence';

export interface TlsDestination {
  /** The name the client dials: a Marathon id or a Mesos-DNS name. */
  readonly host: string;
  /** The same service's other names (its Marathon id beside its Mesos-DNS name). */
  readonly aliases?: readonly string[];
  readonly port: number;
  readonly clientNamespace: string;
}

export interface DestinationTls extends ClientTlsSettings {
  /** The DestinationRule it came from. */
  readonly rule: { readonly namespace: string; readonly name: string };
}

/** An exact host beats any wildcard. */
const EXACT = Number.MAX_SAFE_INTEGER;

/**
 * The rule for the destination: one in the client's namespace before one elsewhere (Istio 1.1's
 * lookup order); then the most specific host (exact, then the longest `*.suffix`, then `*`); then
 * the oldest. Its portLevelSettings tls for the port, else its trafficPolicy tls. Undefined when no
 * rule matches or the rule sets no tls: the caller then applies auto-mTLS.
 */
export function resolveDestinationTls(policies: readonly PolicyDocument[], destination: TlsDestination): DestinationTls | undefined {
  const names = [destination.host, ...(destination.aliases ?? [])].map((n) => n.toLowerCase());
  const local: Scored[] = [];
  const elsewhere: Scored[] = [];
  for (const doc of policies) {
    if (doc.kind !== 'DestinationRule') continue;
    const score = hostScore(doc.spec.host, names);
    if (score === undefined) continue;
    (doc.metadata.namespace === destination.clientNamespace ? local : elsewhere).push({ rule: doc, score });
  }
  const chosen = best(local) ?? best(elsewhere);
  if (chosen === undefined) return undefined;
  const tls = chosen.spec.portLevelTls.find((p) => p.port === destination.port)?.tls ?? chosen.spec.tls;
  if (tls === undefined) return undefined;
  return { ...tls, rule: { namespace: chosen.metadata.namespace, name: chosen.metadata.name } };
}

interface Scored {
  readonly rule: DestinationRule;
  readonly score: number;
}

function best(candidates: readonly Scored[]): DestinationRule | undefined {
  let top: Scored | undefined;
  for (const c of candidates) {
    if (top === undefined || c.score > top.score || (c.score === top.score && olderFirst(c.rule, top.rule) < 0)) top = c;
  }
  return top?.rule;
}

/** How specifically a rule's host names one of the destination's names; undefined when it does not. */
function hostScore(host: string, names: readonly string[]): number | undefined {
  if (names.includes(host)) return EXACT;
  if (host === '*') return 0;
  if (!host.startsWith('*.')) return undefined;
  const suffix = host.slice(1); // ".marathon.mesos"
  return names.some((n) => !n.startsWith('/') && n.length > suffix.length && n.endsWith(suffix)) ? suffix.length : undefined;
}
