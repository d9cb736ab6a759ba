/**
 * The canonical form of a document: Istio's own YAML/JSON shape holding only what citadel acts on,
 * keys in a fixed order, defaults left out. It is what the store keeps and what `policy get` prints.
 */
import type { ClientTlsSettings, ObjectMeta, PolicyDocument } from './documents';
import { namespaceOf } from './documents';
import { readPolicyDocument } from './document-reader';
import { formatIssue, Issues } from './issues';
import { PolicyError } from './policy-error';
import { toRaw } from './raw-value';

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };
export type JsonObject = { readonly [key: string]: JsonValue };

export interface CanonicalPolicy extends JsonObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: JsonObject;
  readonly spec: JsonObject;
}

export function toCanonical(doc: PolicyDocument): CanonicalPolicy {
  return { apiVersion: doc.apiVersion, kind: doc.kind, metadata: metadataOf(doc.metadata, namespaceOf(doc)), spec: specOf(doc) };
}

/**
 * A stored canonical object back to a typed document, checked as any input is (the store is a
 * boundary too). `origin` names it in messages, e.g. the store key.
 */
export function fromCanonical(value: unknown, origin: string): PolicyDocument {
  const issues = new Issues();
  const { document, subject } = readPolicyDocument(toRaw(value, '', issues), issues);
  const where = { file: origin, document: 1 };
  if (document === undefined || issues.errors.length > 0) throw new PolicyError(issues.errors.map((e) => formatIssue(where, subject, e)));
  return document;
}

function metadataOf(meta: ObjectMeta, namespace: string | undefined): JsonObject {
  return {
    name: meta.name,
    ...(namespace !== undefined && { namespace }),
    ...(meta.creationTimestamp !== undefined && { creationTimestamp: meta.creationTimestamp }),
    ...(meta.labels !== undefined && { labels: { ...meta.labels } }),
    ...(meta.annotations !== undefined && { annotations: { ...meta.annotations } }),
  };
}

function specOf(doc: PolicyDocument): JsonObject {
  switch (doc.kind) {
    case 'MeshPolicy':
    case 'Policy': {
      const { targets, peerMtls } = doc.spec;
      return {
        ...(targets.length > 0 && {
          targets: targets.map((t) => ({ name: t.name, ...(t.ports.length > 0 && { ports: t.ports.map((p) => ({ ...p })) }) })),
        }),
        ...(peerMtls !== undefined && { peers: [{ mtls: { mode: peerMtls } }] }),
      };
    }
    case 'PeerAuthentication': {
      const { selector, mtls, portLevelMtls } = doc.spec;
      return {
        ...(selector !== undefined && { selector: { matchLabels: { ...selector } } }),
        ...(mtls !== 'UNSET' && { mtls: { mode: mtls } }),
        ...(portLevelMtls.length > 0 && {
          portLevelMtls: Object.fromEntries(portLevelMtls.map((p) => [String(p.port), { mode: p.mode }])),
        }),
      };
    }
    case 'DestinationRule': {
      const { host, tls, portLevelTls } = doc.spec;
      const trafficPolicy: JsonObject = {
        ...(tls !== undefined && { tls: tlsOf(tls) }),
        ...(portLevelTls.length > 0 && {
          portLevelSettings: portLevelTls.map((p) => ({ port: { number: p.port }, tls: tlsOf(p.tls) })),
        }),
      };
      return { host, ...(Object.keys(trafficPolicy).length > 0 && { trafficPolicy }) };
    }
  }
}

function tlsOf(tls: ClientTlsSettings): JsonObject {
  return {
    mode: tls.mode,
    ...(tls.clientCertificate !== undefined && { clientCertificate: tls.clientCertificate }),
    ...(tls.privateKey !== undefined && { privateKey: tls.privateKey }),
    ...(tls.caCertificates !== undefined && { caCertificates: tls.caCertificates }),
    ...(tls.subjectAltNames !== undefined && { subjectAltNames: [...tls.subjectAltNames] }),
    ...(tls.sni !== undefined && { sni: tls.sni }),
  };
}
