/** The spec of networking.istio.io DestinationRule, as far as TLS goes (istio/api networking/v1alpha3/destination_rule.proto). */
import { CLIENT_TLS_MODES, type ClientTlsSettings, type DestinationRuleSpec, type PortTls } from './documents';
import {
  asObject,
  ignoredBoolean,
  ignoredList,
  ignoredObject,
  ignoredString,
  ignoredStringList,
  type ObjectReader,
  type Schema,
} from './field-reader';
import { checkHost } from './names';

const TLS_ONLY = 'citadel configures TLS only';

export const DESTINATION_RULE_SPEC_SCHEMA: Schema = {
  what: 'DestinationRule spec',
  fields: ['host', 'trafficPolicy'],
  ignored: {
    subsets: ignoredList('citadel sends traffic to the whole service'),
    exportTo: ignoredStringList('every rule is visible to every namespace (Istio default)'),
    workloadSelector: ignoredObject('the rule applies to every client sidecar'),
  },
};
const TRAFFIC_POLICY_SCHEMA: Schema = {
  what: 'trafficPolicy',
  fields: ['tls', 'portLevelSettings'],
  ignored: {
    loadBalancer: ignoredObject(TLS_ONLY),
    connectionPool: ignoredObject(TLS_ONLY),
    outlierDetection: ignoredObject(TLS_ONLY),
    tunnel: ignoredObject(TLS_ONLY),
    proxyProtocol: ignoredObject(TLS_ONLY),
  },
};
const PORT_TRAFFIC_POLICY_SCHEMA: Schema = {
  what: 'a port-level setting',
  fields: ['port', 'tls'],
  ignored: {
    loadBalancer: ignoredObject(TLS_ONLY),
    connectionPool: ignoredObject(TLS_ONLY),
    outlierDetection: ignoredObject(TLS_ONLY),
  },
};
const PORT_SELECTOR_SCHEMA: Schema = { what: 'port', fields: ['number'] };
const TLS_SCHEMA: Schema = {
  what: 'tls',
  fields: ['mode', 'clientCertificate', 'privateKey', 'caCertificates', 'subjectAltNames', 'sni'],
  ignored: {
    credentialName: ignoredString('Marathon has no Kubernetes secrets; give clientCertificate and privateKey'),
    insecureSkipVerify: ignoredBoolean('citadel always verifies the server certificate'),
    caCrl: ignoredString('citadel checks no revocation list'),
  },
};

export function readDestinationRuleSpec(spec: ObjectReader | undefined): DestinationRuleSpec {
  if (spec === undefined) return { host: '', portLevelTls: [] };
  const host = spec.string('host', true);
  const problem = host === undefined ? undefined : checkHost(host);
  if (problem !== undefined) spec.issues.error(spec.at('host'), problem);
  const policy = spec.object('trafficPolicy', TRAFFIC_POLICY_SCHEMA);
  const tls = policy?.object('tls', TLS_SCHEMA);
  return {
    host: host ?? '',
    ...(tls !== undefined && { tls: readTls(tls) }),
    portLevelTls: policy === undefined ? [] : readPortLevelTls(policy),
  };
}

function readPortLevelTls(policy: ObjectReader): PortTls[] {
  const out: PortTls[] = [];
  const seen = new Set<number>();
  (policy.list('portLevelSettings') ?? []).forEach((item, i) => {
    const setting = asObject(item, `${policy.at('portLevelSettings')}[${i}]`, policy.issues, PORT_TRAFFIC_POLICY_SCHEMA);
    if (setting === undefined) return;
    const port = setting.object('port', PORT_SELECTOR_SCHEMA, true)?.integer('number', 1, 65535, true);
    if (port !== undefined && seen.has(port)) policy.issues.error(setting.at('port'), `port ${port} has settings twice`);
    if (port !== undefined) seen.add(port);
    const reader = setting.object('tls', TLS_SCHEMA);
    const tls = reader === undefined ? undefined : readTls(reader);
    if (port !== undefined && tls !== undefined) out.push({ port, tls });
  });
  return out.sort((a, b) => a.port - b.port);
}

/** Keeps what the mode uses; reports the rest as ignored. An absent mode is DISABLE (proto3 default). */
function readTls(tls: ObjectReader): ClientTlsSettings {
  const mode = tls.enumOf('mode', CLIENT_TLS_MODES) ?? 'DISABLE';
  const text = (key: string): string | undefined => {
    const s = tls.string(key);
    return s === '' ? undefined : s;
  };
  const clientCertificate = text('clientCertificate');
  const privateKey = text('privateKey');
  const caCertificates = text('caCertificates');
  const sni = text('sni');
  const subjectAltNames = tls.stringList('subjectAltNames');
  subjectAltNames?.forEach((san, i) => {
    if (san === '') tls.issues.error(`${tls.at('subjectAltNames')}[${i}]`, 'must not be empty');
  });
  const sans = subjectAltNames !== undefined && subjectAltNames.length > 0 ? subjectAltNames : undefined;

  const unused = (why: string, fields: Record<string, unknown>): void => {
    for (const [key, value] of Object.entries(fields)) if (value !== undefined) tls.issues.ignored(tls.at(key), why);
  };
  switch (mode) {
    case 'DISABLE':
      unused('mode DISABLE sends plaintext', { clientCertificate, privateKey, caCertificates, subjectAltNames: sans, sni });
      return { mode };
    case 'ISTIO_MUTUAL':
      unused("ISTIO_MUTUAL presents the workload's citadel certificate and checks the mesh root", {
        clientCertificate,
        privateKey,
        caCertificates,
      });
      return { mode, ...(sans && { subjectAltNames: sans }), ...(sni !== undefined && { sni }) };
    case 'SIMPLE':
      unused('SIMPLE presents no client certificate', { clientCertificate, privateKey });
      return {
        mode,
        ...(caCertificates !== undefined && { caCertificates }),
        ...(sans && { subjectAltNames: sans }),
        ...(sni !== undefined && { sni }),
      };
    case 'MUTUAL':
      if (clientCertificate === undefined) tls.issues.error(tls.at('clientCertificate'), 'is required with mode MUTUAL (a path in the client sidecar)');
      if (privateKey === undefined) tls.issues.error(tls.at('privateKey'), 'is required with mode MUTUAL (a path in the client sidecar)');
      return {
        mode,
        clientCertificate: clientCertificate ?? '',
        privateKey: privateKey ?? '',
        ...(caCertificates !== undefined && { caCertificates }),
        ...(sans && { subjectAltNames: sans }),
        ...(sni !== undefined && { sni }),
      };
  }
}
