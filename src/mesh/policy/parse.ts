/** Policy files (multi-document YAML, or JSON) to typed documents: everything or a PolicyError, never half. */
import { displayName, policyKey, type PolicyDocument } from './documents';
import { readPolicyDocument } from './document-reader';
import { asObject, ignoredObject, type Schema } from './field-reader';
import { formatIssue, Issues, type DocumentOrigin } from './issues';
import { PolicyError } from './policy-error';
import { isRawMap, toRaw, type Raw } from './raw-value';
import { firstLine, yamlDocuments } from './yaml-documents';

export interface PolicySource {
  /** As the user named it; every message starts with it. */
  readonly file: string;
  readonly text: string;
}

export interface ParsedPolicies {
  readonly documents: readonly PolicyDocument[];
  /** Fields accepted and not acted on, one line each, in the errors' format. */
  readonly warnings: readonly string[];
}

/** Alias expansions allowed per document: YAML anchors cannot blow up memory. */
const MAX_ALIASES = 100;

/** `kubectl get -o json` of several objects, and our own JSON output. */
const LIST_SCHEMA: Schema = { what: 'a List', fields: ['apiVersion', 'kind', 'items'], ignored: { metadata: ignoredObject('list metadata') } };

interface Located {
  readonly document: PolicyDocument;
  readonly origin: DocumentOrigin;
}

/** Parses one file's text; see parsePolicySources. */
export function parsePolicyText(text: string, file: string): ParsedPolicies {
  return parsePolicySources([{ file, text }]);
}

/**
 * Parses every source and returns all documents, or throws one PolicyError listing every problem
 * (syntax, schema, Istio's rules, a kind/namespace/name given twice across the sources).
 */
export function parsePolicySources(sources: readonly PolicySource[]): ParsedPolicies {
  const errors: string[] = [];
  const warnings: string[] = [];
  const located: Located[] = [];
  for (const source of sources) readSource(source, located, errors, warnings);
  checkDuplicates(located, errors);
  if (errors.length > 0) throw new PolicyError(errors);
  return { documents: located.map((l) => l.document), warnings };
}

function readSource(source: PolicySource, out: Located[], errors: string[], warnings: string[]): void {
  const read = yamlDocuments(source.text);
  if ('problems' in read) {
    for (const p of read.problems) {
      const where = p.line === undefined ? '' : `line ${p.line}, column ${p.column}: `;
      errors.push(formatIssue({ file: source.file, document: p.document }, undefined, { path: '', message: `${where}${p.message}` }));
    }
    return;
  }
  read.documents.forEach((doc, i) => {
    const origin: DocumentOrigin = { file: source.file, document: i + 1 };
    let js: unknown;
    try {
      js = doc.toJS({ mapAsMap: true, maxAliasCount: MAX_ALIASES });
    } catch (err) {
      // An alias bomb (yaml's own limit), or aliases nesting past the stack.
      errors.push(formatIssue(origin, undefined, { path: '', message: `YAML: ${firstLine(err)}` }));
      return;
    }
    if (js === null || js === undefined) return; // an empty document: `---` twice, or only comments
    const issues = new Issues();
    const raw = toRaw(js, '', issues);
    if (isRawMap(raw) && raw.get('kind') === 'List') {
      readList(raw, issues, origin, out, errors, warnings);
      return;
    }
    readOne(raw, issues, origin, out, errors, warnings);
  });
}

function readList(raw: Raw, issues: Issues, origin: DocumentOrigin, out: Located[], errors: string[], warnings: string[]): void {
  const list = asObject(raw, '', issues, LIST_SCHEMA);
  if (list !== undefined && list.string('apiVersion', true) !== undefined && list.raw('apiVersion') !== 'v1') {
    issues.error('apiVersion', 'a List is apiVersion v1');
  }
  const items = list?.list('items') ?? [];
  report(origin, 'List', issues, errors, warnings);
  items.forEach((item, j) => readOne(item, new Issues(), { ...origin, item: j + 1 }, out, errors, warnings));
}

function readOne(raw: Raw, issues: Issues, origin: DocumentOrigin, out: Located[], errors: string[], warnings: string[]): void {
  const { document, subject } = readPolicyDocument(raw, issues);
  report(origin, subject, issues, errors, warnings);
  if (document !== undefined && issues.errors.length === 0) out.push({ document, origin });
}

function report(origin: DocumentOrigin, subject: string | undefined, issues: Issues, errors: string[], warnings: string[]): void {
  for (const e of issues.errors) errors.push(formatIssue(origin, subject, e));
  for (const w of issues.warnings) warnings.push(formatIssue(origin, subject, w));
}

function checkDuplicates(located: readonly Located[], errors: string[]): void {
  const first = new Map<string, DocumentOrigin>();
  for (const { document, origin } of located) {
    const key = policyKey(document);
    const earlier = first.get(key);
    if (earlier === undefined) {
      first.set(key, origin);
      continue;
    }
    const there = `${earlier.file} document ${earlier.document}${earlier.item === undefined ? '' : ` item ${earlier.item}`}`;
    errors.push(
      formatIssue(origin, `${document.kind} ${displayName(document)}`, {
        path: 'metadata.name',
        message: `the same ${document.kind} as ${there}; each kind/namespace/name may appear once`,
      }),
    );
  }
}
