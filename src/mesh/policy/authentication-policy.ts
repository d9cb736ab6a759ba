/** The spec of authentication.istio.io/v1alpha1 MeshPolicy and Policy (istio/api authentication/v1alpha1/policy.proto). */
import { ALPHA_MTLS_MODES, type AlphaMtlsMode, type AuthenticationSpec, type PortSelector, type TargetSelector } from './documents';
import {
  asObject,
  ignoredBoolean,
  ignoredEnum,
  ignoredList,
  ignoredObject,
  type ObjectReader,
  type Schema,
} from './field-reader';
import { checkPortName, checkServiceName } from './names';

const NOT_JWT = 'citadel authenticates peers by mTLS only';

export const AUTHENTICATION_SPEC_SCHEMA: Schema = {
  what: 'Policy spec',
  fields: ['targets', 'peers'],
  ignored: {
    peerIsOptional: ignoredBoolean('citadel enforces the peer method as given'),
    origins: ignoredList(`origin (JWT) authentication: ${NOT_JWT}`),
    originIsOptional: ignoredBoolean(`origin (JWT) authentication: ${NOT_JWT}`),
    principalBinding: ignoredEnum(['USE_PEER', 'USE_ORIGIN'], 'the principal is always the peer identity'),
  },
};

const TARGET_SCHEMA: Schema = {
  what: 'a target',
  fields: ['name', 'ports'],
  ignored: { labels: ignoredObject('Istio never implemented target labels; name the service') },
};
const PORT_SCHEMA: Schema = { what: 'a port selector', fields: ['number', 'name'] };
const PEER_SCHEMA: Schema = { what: 'a peer method', fields: ['mtls'], ignored: { jwt: ignoredObject(`JWT peers: ${NOT_JWT}`) } };
const MTLS_SCHEMA: Schema = { what: 'mtls', fields: ['mode', 'allowTls'] };

/** Reads targets and the first mtls peer; absent spec is an empty one. */
export function readAuthenticationSpec(spec: ObjectReader | undefined): AuthenticationSpec {
  if (spec === undefined) return { targets: [] };
  const targets = readTargets(spec);
  const peerMtls = readPeerMtls(spec);
  return { targets, ...(peerMtls !== undefined && { peerMtls }) };
}

function readTargets(spec: ObjectReader): TargetSelector[] {
  const out: TargetSelector[] = [];
  (spec.list('targets') ?? []).forEach((item, i) => {
    const target = asObject(item, `${spec.at('targets')}[${i}]`, spec.issues, TARGET_SCHEMA);
    if (target === undefined) return;
    const name = target.string('name', true);
    const problem = name === undefined ? undefined : checkServiceName(name);
    if (problem !== undefined) spec.issues.error(target.at('name'), problem);
    out.push({ name: name ?? '', ports: readPortSelectors(target) });
  });
  return out;
}

function readPortSelectors(target: ObjectReader): PortSelector[] {
  const out: PortSelector[] = [];
  (target.list('ports') ?? []).forEach((item, i) => {
    const path = `${target.at('ports')}[${i}]`;
    const port = asObject(item, path, target.issues, PORT_SCHEMA);
    if (port === undefined) return;
    if (port.has('number') === port.has('name')) {
      target.issues.error(path, 'give exactly one of number or name');
      return;
    }
    const number = port.integer('number', 1, 65535);
    if (number !== undefined) out.push({ number });
    const name = port.string('name');
    if (name === undefined) return;
    const problem = checkPortName(name);
    if (problem !== undefined) target.issues.error(port.at('name'), problem);
    else out.push({ name });
  });
  return out;
}

/** Istio uses the first mtls peer; `mtls:` (null) and `mtls: {}` mean STRICT; allowTls makes it PERMISSIVE. */
function readPeerMtls(spec: ObjectReader): AlphaMtlsMode | undefined {
  let first: AlphaMtlsMode | undefined;
  (spec.list('peers') ?? []).forEach((item, i) => {
    const path = `${spec.at('peers')}[${i}]`;
    const peer = asObject(item, path, spec.issues, PEER_SCHEMA);
    if (peer === undefined) return;
    if (peer.hasKey('mtls') && peer.has('jwt')) {
      spec.issues.error(path, 'mtls and jwt exclude each other; give one per peer');
      return;
    }
    if (!peer.hasKey('mtls')) {
      if (!peer.has('jwt')) spec.issues.error(path, 'give mtls (or jwt)');
      return;
    }
    const mtls = peer.raw('mtls') === undefined ? undefined : peer.object('mtls', MTLS_SCHEMA);
    if (peer.raw('mtls') !== undefined && mtls === undefined) return;
    const mode = mtls?.enumOf('mode', ALPHA_MTLS_MODES) ?? 'STRICT';
    const allowTls = mtls?.boolean('allowTls') ?? false;
    const effective: AlphaMtlsMode = allowTls ? 'PERMISSIVE' : mode;
    if (first === undefined) first = effective;
    else spec.issues.warn(peer.at('mtls'), 'a second mtls peer; Istio uses the first');
  });
  return first;
}
