/** One raw document (apiVersion, kind, metadata, spec) to a typed PolicyDocument, with Istio's own validation rules. */
import { AUTHENTICATION_SPEC_SCHEMA, readAuthenticationSpec } from './authentication-policy';
import { DESTINATION_RULE_SPEC_SCHEMA, readDestinationRuleSpec } from './destination-rule';
import {
  API_VERSIONS,
  DEFAULT_POLICY_NAME,
  DESTINATION_RULE,
  MESH_POLICY,
  PEER_AUTHENTICATION,
  POLICY,
  POLICY_KINDS,
  type ObjectMeta,
  type PolicyDocument,
  type PolicyKind,
} from './documents';
import { asObject, ignoredObject, type ObjectReader, type Schema } from './field-reader';
import type { Issues } from './issues';
import { METADATA_SCHEMA, readMetadata } from './metadata';
import { PEER_AUTHENTICATION_SPEC_SCHEMA, readPeerAuthenticationSpec } from './peer-authentication';
import { describeRaw, INVALID, isRawMap, type Raw } from './raw-value';
import { quote } from './quote';

const DOCUMENT_SCHEMA: Schema = {
  what: 'a document',
  fields: ['apiVersion', 'kind', 'metadata', 'spec'],
  ignored: { status: ignoredObject('status is written by the control plane') },
};

const SPEC_SCHEMAS: Record<PolicyKind, Schema> = {
  MeshPolicy: { ...AUTHENTICATION_SPEC_SCHEMA, what: 'MeshPolicy spec' },
  Policy: AUTHENTICATION_SPEC_SCHEMA,
  PeerAuthentication: PEER_AUTHENTICATION_SPEC_SCHEMA,
  DestinationRule: DESTINATION_RULE_SPEC_SCHEMA,
};

export interface DocumentRead {
  /** Undefined when any error was recorded. */
  readonly document?: PolicyDocument;
  /** `PeerAuthentication prod/api` as far as known, for messages. */
  readonly subject?: string;
}

export function readPolicyDocument(raw: Raw, issues: Issues): DocumentRead {
  if (raw === INVALID) return {};
  if (!isRawMap(raw)) {
    issues.error('', `expected a mapping with apiVersion, kind, metadata and spec, got ${describeRaw(raw)}`);
    return {};
  }
  const top = asObject(raw, '', issues, DOCUMENT_SCHEMA);
  if (top === undefined) return {};
  const kind = top.enumOf('kind', POLICY_KINDS, true);
  const apiVersion = top.string('apiVersion', true);
  if (kind !== undefined && apiVersion !== undefined && !(API_VERSIONS[kind] as readonly string[]).includes(apiVersion)) {
    issues.error('apiVersion', `${quote(apiVersion)} is not one of ${API_VERSIONS[kind].join(', ')} for ${kind}`);
  }
  const clusterScoped = kind === MESH_POLICY;
  const { name, namespace, meta } = readMetadata(top.object('metadata', METADATA_SCHEMA, true), clusterScoped, kind ?? 'this kind');
  const subject = subjectOf(kind, namespace, name, clusterScoped);
  if (kind === undefined) return { subject };

  const document = buildDocument(kind, apiVersion ?? '', meta, namespace ?? '', top.object('spec', SPEC_SCHEMAS[kind]), top);
  return { subject, ...(issues.errors.length === 0 && { document }) };
}

function buildDocument(
  kind: PolicyKind,
  apiVersion: string,
  meta: ObjectMeta,
  namespace: string,
  spec: ObjectReader | undefined,
  top: ObjectReader,
): PolicyDocument {
  const issues = top.issues;
  const specPath = top.at('spec');
  switch (kind) {
    case MESH_POLICY: {
      const s = readAuthenticationSpec(spec);
      if (meta.name !== '' && meta.name !== DEFAULT_POLICY_NAME) {
        issues.error('metadata.name', `${quote(meta.name)}: only the MeshPolicy named "default" is honoured; rename it`);
      }
      if (s.targets.length > 0) issues.error(`${specPath}.targets`, 'a MeshPolicy is mesh-wide and takes no targets');
      return { kind, apiVersion: apiVersion as (typeof API_VERSIONS)['MeshPolicy'][number], metadata: meta, spec: s };
    }
    case POLICY: {
      const s = readAuthenticationSpec(spec);
      if (s.targets.length === 0 && meta.name !== '' && meta.name !== DEFAULT_POLICY_NAME) {
        issues.error(
          'metadata.name',
          `${quote(meta.name)}: a Policy without targets covers the whole namespace and must be named "default"; add spec.targets or rename it`,
        );
      }
      if (s.targets.length > 0 && meta.name === DEFAULT_POLICY_NAME) {
        issues.error(`${specPath}.targets`, 'the Policy named "default" covers the whole namespace and takes no targets; give this one another name');
      }
      return { kind, apiVersion: apiVersion as (typeof API_VERSIONS)['Policy'][number], metadata: { ...meta, namespace }, spec: s };
    }
    case PEER_AUTHENTICATION:
      return {
        kind,
        apiVersion: apiVersion as (typeof API_VERSIONS)['PeerAuthentication'][number],
        metadata: { ...meta, namespace },
        spec: readPeerAuthenticationSpec(spec),
      };
    case DESTINATION_RULE: {
      if (spec === undefined && !top.has('spec')) issues.error('spec.host', 'is required');
      return {
        kind,
        apiVersion: apiVersion as (typeof API_VERSIONS)['DestinationRule'][number],
        metadata: { ...meta, namespace },
        spec: readDestinationRuleSpec(spec),
      };
    }
  }
}

function subjectOf(kind: PolicyKind | undefined, namespace: string | undefined, name: string | undefined, clusterScoped: boolean): string | undefined {
  if (kind === undefined) return undefined;
  if (name === undefined) return kind;
  return clusterScoped || namespace === undefined ? `${kind} ${name}` : `${kind} ${namespace}/${name}`;
}
