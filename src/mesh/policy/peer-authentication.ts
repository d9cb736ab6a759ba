/** The spec of security.istio.io PeerAuthentication (istio/api security/v1beta1/peer_authentication.proto). */
import { PEER_MTLS_MODES, type PeerAuthenticationSpec, type PeerMtlsMode, type PortMtls } from './documents';
import { asMap, asObject, type ObjectReader, type Schema } from './field-reader';
import { fieldPath } from './issues';
import { readLabels } from './metadata';
import { quote } from './quote';

export const PEER_AUTHENTICATION_SPEC_SCHEMA: Schema = {
  what: 'PeerAuthentication spec',
  fields: ['selector', 'mtls', 'portLevelMtls'],
};
const SELECTOR_SCHEMA: Schema = { what: 'selector', fields: ['matchLabels'] };
const MTLS_SCHEMA: Schema = { what: 'mtls', fields: ['mode'] };

export function readPeerAuthenticationSpec(spec: ObjectReader | undefined): PeerAuthenticationSpec {
  if (spec === undefined) return { mtls: 'UNSET', portLevelMtls: [] };
  const errorsBefore = spec.issues.errors.length;
  const selectorReader = spec.object('selector', SELECTOR_SCHEMA);
  // Istio treats empty matchLabels as no selector: namespace (or mesh) scope.
  const selector = selectorReader === undefined ? undefined : readLabels(selectorReader, 'matchLabels', true);
  const selectorBroken = spec.issues.errors.length > errorsBefore;
  const mtls = readMode(spec, 'mtls');
  const portLevelMtls = readPortLevelMtls(spec);
  if (portLevelMtls.length > 0 && selector === undefined && !selectorBroken) {
    spec.issues.error(spec.at('portLevelMtls'), 'needs spec.selector.matchLabels (Istio applies port-level mTLS to selected workloads only)');
  }
  return { ...(selector !== undefined && { selector }), mtls, portLevelMtls };
}

/** `{mode}` under key; absent, null, `{}` and `mode: UNSET` all inherit. */
function readMode(parent: ObjectReader, key: string): PeerMtlsMode {
  return parent.object(key, MTLS_SCHEMA)?.enumOf('mode', PEER_MTLS_MODES) ?? 'UNSET';
}

function readPortLevelMtls(spec: ObjectReader): PortMtls[] {
  const raw = spec.raw('portLevelMtls');
  if (raw === undefined) return [];
  const map = asMap(raw, spec.at('portLevelMtls'), spec.issues);
  if (map === undefined) return [];
  if (map.size === 0) spec.issues.error(spec.at('portLevelMtls'), 'if given, must name at least one port');
  const out: PortMtls[] = [];
  for (const [key, value] of map) {
    const at = fieldPath(spec.at('portLevelMtls'), key);
    const port = /^[0-9]{1,5}$/.test(key) ? Number(key) : NaN;
    if (!(port >= 1 && port <= 65535)) {
      spec.issues.error(at, `key ${quote(key)} must be a port number from 1 to 65535`);
      continue;
    }
    if (out.some((p) => p.port === port)) {
      spec.issues.error(at, `port ${port} appears twice`);
      continue;
    }
    const mtls = value === null ? undefined : asObject(value, at, spec.issues, MTLS_SCHEMA);
    out.push({ port, mode: mtls?.enumOf('mode', PEER_MTLS_MODES) ?? 'UNSET' });
  }
  return out.sort((a, b) => a.port - b.port);
}
