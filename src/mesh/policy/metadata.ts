/** metadata: name, namespace, creationTimestamp, labels, annotations (the rest of ObjectMeta is Kubernetes' own). */
import { checkNamespace } from '../../pki/identity';
import { DEFAULT_NAMESPACE, type Labels, type ObjectMeta } from './documents';
import { ignoredAny, type ObjectReader, type Schema } from './field-reader';
import { fieldPath } from './issues';
import { checkLabelKey, checkLabelValue, checkObjectName, checkTimestamp } from './names';
import { quote } from './quote';

const SET_BY_KUBERNETES = 'set by Kubernetes; citadel keeps its own';

export const METADATA_SCHEMA: Schema = {
  what: 'metadata',
  fields: ['name', 'namespace', 'creationTimestamp', 'labels', 'annotations'],
  ignored: Object.fromEntries(
    [
      'uid',
      'resourceVersion',
      'generation',
      'selfLink',
      'managedFields',
      'generateName',
      'ownerReferences',
      'finalizers',
      'deletionTimestamp',
      'deletionGracePeriodSeconds',
    ].map((k) => [k, ignoredAny(SET_BY_KUBERNETES)]),
  ),
};

/** What the metadata says; `name`/`namespace` are undefined when invalid, for the message header. */
export interface MetadataRead {
  readonly name?: string;
  readonly namespace?: string;
  /** Without the namespace, which the namespaced kinds add. */
  readonly meta: ObjectMeta;
}

/**
 * Reads metadata. A cluster-scoped kind (MeshPolicy) takes no namespace; a namespaced one defaults
 * to `default`. The returned meta is complete only when no error was recorded.
 */
export function readMetadata(metadata: ObjectReader | undefined, clusterScoped: boolean, kind: string): MetadataRead {
  if (metadata === undefined) return { meta: { name: '' } };
  const issues = metadata.issues;
  const rawName = metadata.string('name', true);
  const nameProblem = rawName === undefined ? undefined : checkObjectName(rawName);
  if (nameProblem !== undefined) issues.error(metadata.at('name'), nameProblem);
  const name = nameProblem === undefined ? rawName : undefined;

  let namespace: string | undefined;
  if (clusterScoped) {
    if (metadata.has('namespace')) {
      issues.error(metadata.at('namespace'), `${kind} is cluster-scoped and takes no namespace; remove it`);
    }
  } else {
    const rawNs = metadata.string('namespace') ?? (metadata.has('namespace') ? undefined : DEFAULT_NAMESPACE);
    // checkNamespace's own message carries the raw text; ours quotes it, so it stays one line.
    const nsProblem =
      rawNs === undefined || checkNamespace(rawNs) === undefined
        ? undefined
        : `${quote(rawNs)} must be a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)`;
    if (nsProblem !== undefined) issues.error(metadata.at('namespace'), nsProblem);
    namespace = nsProblem === undefined ? rawNs : undefined;
  }

  const creationTimestamp = metadata.string('creationTimestamp');
  const tsProblem = creationTimestamp === undefined ? undefined : checkTimestamp(creationTimestamp);
  if (tsProblem !== undefined) issues.error(metadata.at('creationTimestamp'), tsProblem);

  const labels = readLabels(metadata, 'labels', true);
  const annotations = readLabels(metadata, 'annotations', false);
  const meta: ObjectMeta = {
    name: name ?? '',
    ...(creationTimestamp !== undefined && { creationTimestamp }),
    ...(labels !== undefined && { labels }),
    ...(annotations !== undefined && { annotations }),
  };
  return { name, namespace, meta };
}

/**
 * A string map with Kubernetes label keys, keys sorted (a stable canonical form); values checked as
 * label values when `labelValues`. Undefined when absent or empty.
 */
export function readLabels(reader: ObjectReader, key: string, labelValues: boolean): Labels | undefined {
  const entries = reader.stringMap(key);
  if (entries === undefined || entries.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const at = fieldPath(reader.at(key), k);
    const problem = checkLabelKey(k) ?? (labelValues ? checkLabelValue(v) : undefined);
    if (problem !== undefined) reader.issues.error(at, problem);
    else out[k] = v;
  }
  return out;
}
