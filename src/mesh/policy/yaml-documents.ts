/**
 * YAML text to yaml Documents, refusing hostile nesting first: yaml's parser and composer recurse
 * per nesting level, and a stack overflow there must become a one-line error, not a crash.
 */
import { Composer, CST, Lexer, LineCounter, Parser, type Document } from 'yaml';

/** Collections nested deeper than this are refused (Istio documents need about 8). */
export const MAX_DEPTH = 64;
/** Beyond this, block indentation alone could nest deeper than yaml's parser can unwind. */
const MAX_INDENT = 256;

const COLLECTIONS: ReadonlySet<unknown> = new Set(['block-map', 'block-seq', 'flow-collection']);
const BLOCK_INDICATORS: ReadonlySet<unknown> = new Set(['seq-item-ind', 'explicit-key-ind', 'map-value-ind']);
/** Tokens that do not start a document's content (an implicit first document). */
const NOT_CONTENT: ReadonlySet<unknown> = new Set(['space', 'newline', 'comment', 'directive-line', 'doc-mode', 'doc-end', 'byte-order-mark']);
/** Lexer markers that stand for no source text. */
const MARKERS: ReadonlySet<string> = new Set([CST.DOCUMENT, CST.FLOW_END, CST.SCALAR]);

/** A problem in the YAML itself, with its 1-based document and position. */
export interface YamlProblem {
  readonly document: number;
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

export type YamlDocuments = { readonly documents: Document.Parsed[] } | { readonly problems: YamlProblem[] };

/** Every document of the text, or the problems (syntax, nesting) that stop it being read. */
export function yamlDocuments(text: string): YamlDocuments {
  const lexical = lexicalProblem(text);
  if (lexical !== undefined) return { problems: [lexical] };
  const lines = new LineCounter();
  let tokens: CST.Token[];
  try {
    tokens = Array.from(new Parser(lines.addNewLine).parse(text));
  } catch (err) {
    return { problems: [{ document: 1, message: `YAML: ${firstLine(err)}` }] };
  }
  const at = (document: number, offset: number, message: string): YamlProblem => {
    const { line, col } = lines.linePos(offset);
    return { document, line, column: col, message };
  };
  const problems: YamlProblem[] = [];
  let document = 0;
  for (const token of tokens) {
    if (token.type !== 'document') continue;
    document++;
    const offset = offsetTooDeep(token);
    if (offset !== undefined) problems.push(at(document, offset, `nested deeper than ${MAX_DEPTH} levels`));
  }
  if (problems.length > 0) return { problems };

  const documents = Array.from(new Composer({ uniqueKeys: true }).compose(tokens));
  documents.forEach((doc, i) => {
    for (const p of [...doc.errors, ...doc.warnings]) problems.push(at(i + 1, p.pos[0], `YAML: ${firstLine(p)}`));
  });
  return problems.length > 0 ? { problems } : { documents };
}

/** The first line of an error message (yaml's own position, if any, is replaced by ours). */
export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return (text.split('\n')[0] ?? '').trim();
}

/**
 * On the flat token stream (yaml's lexer does not recurse): flow collections nested deeper than
 * MAX_DEPTH, block indentation past MAX_INDENT, or more than MAX_DEPTH block indicators on a line.
 */
function lexicalProblem(text: string): YamlProblem | undefined {
  let offset = 0;
  let docStarts = 0;
  let contentBeforeFirstStart = false;
  const document = (): number => Math.max(1, docStarts + (contentBeforeFirstStart ? 1 : 0));
  let flow = 0;
  let lineStart = true;
  let indicatorsOnLine = 0;
  for (const token of new Lexer().lex(text)) {
    const type = CST.tokenType(token);
    if (type === 'doc-start') docStarts++;
    else if (docStarts === 0 && !NOT_CONTENT.has(type) && !MARKERS.has(token)) contentBeforeFirstStart = true;
    if (type === 'newline') {
      lineStart = true;
      indicatorsOnLine = 0;
    } else if (type === 'space' && lineStart && flow === 0 && token.length > MAX_INDENT) {
      return problemAt(text, document(), offset + MAX_INDENT, `indented more than ${MAX_INDENT} columns`);
    } else if (type !== 'space' && !MARKERS.has(token)) {
      lineStart = false;
    }
    if (type === 'flow-seq-start' || type === 'flow-map-start') flow++;
    if (type === 'flow-seq-end' || type === 'flow-map-end') flow = Math.max(0, flow - 1);
    if (flow === 0 && BLOCK_INDICATORS.has(type)) indicatorsOnLine++;
    if (flow > MAX_DEPTH || indicatorsOnLine > MAX_DEPTH) {
      return problemAt(text, document(), offset, `nested deeper than ${MAX_DEPTH} levels`);
    }
    if (!MARKERS.has(token)) offset += token.length;
  }
  return undefined;
}

function problemAt(text: string, document: number, offset: number, message: string): YamlProblem {
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { document, line: before.split('\n').length, column: offset - lineStart + 1, message };
}

/** The offset of the first collection nested deeper than MAX_DEPTH in a CST token, walked without recursion. */
function offsetTooDeep(root: CST.Token): number | undefined {
  const pending: [unknown, number][] = [[root, 0]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop() as [unknown, number];
    if (Array.isArray(value)) {
      for (const v of value) pending.push([v, depth]);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    const node = value as { type?: unknown; offset?: unknown };
    const inner = COLLECTIONS.has(node.type) ? depth + 1 : depth;
    if (inner > MAX_DEPTH) return typeof node.offset === 'number' ? node.offset : 0;
    for (const v of Object.values(value)) if (typeof v === 'object' && v !== null) pending.push([v, inner]);
  }
  return undefined;
}
