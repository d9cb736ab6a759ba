/** Problems found in one document, each at a field path, formatted once the document is known. */
import { escapeText } from './quote';

export interface FieldIssue {
  /** `spec.mtls.mode`, `spec.targets[0].name`, `metadata.labels["app.kubernetes.io/name"]`; empty for the document. */
  readonly path: string;
  readonly message: string;
}

export class Issues {
  readonly errors: FieldIssue[] = [];
  readonly warnings: FieldIssue[] = [];

  error(path: string, message: string): void {
    this.errors.push({ path, message });
  }

  /** A field of Istio's schema that citadel accepts and does not act on. */
  ignored(path: string, why: string): void {
    this.warnings.push({ path, message: `accepted but ignored: ${why}` });
  }

  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }
}

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

/** The path of a key under a parent path: `.key` when plain, `["key"]` otherwise. */
export function fieldPath(parent: string, key: string): string {
  if (PLAIN_KEY.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${escapeText(key)}]`;
}

/** Where a document came from: `file: document 2`, `file: document 1 item 3` (a List). */
export interface DocumentOrigin {
  readonly file: string;
  readonly document: number;
  /** 1-based index in a `kind: List`'s items. */
  readonly item?: number;
}

/** `policies/strict.yaml: document 2 (PeerAuthentication prod/api): spec.mtls.mode: message`. */
export function formatIssue(origin: DocumentOrigin, subject: string | undefined, issue: FieldIssue): string {
  const where = `${displayFile(origin.file)}: document ${origin.document}${origin.item === undefined ? '' : ` item ${origin.item}`}`;
  const what = subject === undefined ? '' : ` (${subject})`;
  const field = issue.path === '' ? '' : `${issue.path}: `;
  return `${where}${what}: ${field}${issue.message}`;
}

/** A file name as messages show it: escaped only if it holds a line or control character. */
export function displayFile(file: string): string {
  return /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(file) ? escapeText(file) : file;
}
