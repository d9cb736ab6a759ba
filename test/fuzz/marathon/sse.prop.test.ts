/** Properties of the SSE parser (src/marathon/sse.ts): chunking, line ends, and any text. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatSseEvent, ServerSentEvent, SseParser } from '../../../src/marathon/sse';
import { fuzzParameters } from '../../helpers/fuzz';

/** Feeds the chunks in order; what came out. */
function parse(chunks: string[]): { events: ServerSentEvent[]; heartbeats: number } {
  const events: ServerSentEvent[] = [];
  const p = new SseParser((e) => events.push(e));
  for (const c of chunks) p.push(c);
  return { events, heartbeats: p.heartbeats };
}

/** The text cut at the given points (any point: inside a CRLF, a surrogate pair, a field name). */
function cut(text: string, points: number[]): string[] {
  const at = [...new Set(points.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const p of at) {
    out.push(text.slice(prev, p));
    prev = p;
  }
  out.push(text.slice(prev));
  return out;
}

const value = fc.string({ unit: fc.oneof(fc.constantFrom(' ', ':', 'a', '{', '"', '\u00e9', '\ud83d\ude00'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => c !== '\r' && c !== '\n')), maxLength: 12 });
const space = fc.constantFrom('', ' ');
type Line = { text: string; event?: string; data?: string };
/** One field line, and what it means to the parser. */
const line: fc.Arbitrary<Line> = fc.oneof(
  fc.tuple(space, value).map(([sp, v]) => ({ text: `event:${sp}${v}`, event: strip(sp + v) })),
  fc.tuple(space, value).map(([sp, v]) => ({ text: `data:${sp}${v}`, data: strip(sp + v) })),
  fc.constant({ text: 'data', data: '' }),
  fc.constant({ text: 'event', event: '' }),
  value.map((v) => ({ text: `:${v}` })), // a comment
  fc.tuple(fc.constantFrom('id', 'retry', 'Data', 'eventx', 'x'), value).map(([f, v]) => ({ text: `${f}:${v}` })),
);
function strip(v: string): string {
  return v.startsWith(' ') ? v.slice(1) : v;
}
const EOL = fc.constantFrom('\n', '\r', '\r\n');

/** A stream of blocks (field lines, then a blank line), each line ended by LF, CR or CRLF at random. */
const stream = fc.array(fc.tuple(fc.array(fc.tuple(line, EOL), { maxLength: 5 }), EOL), { maxLength: 8 }).map((blocks) => {
  const lines: Array<[string, string]> = [];
  const events: ServerSentEvent[] = [];
  let heartbeats = 0;
  for (const [fields, blankEol] of blocks) {
    let type = '';
    const data: string[] = [];
    for (const [l, eol] of fields) {
      lines.push([l.text, eol]);
      if (l.event !== undefined) type = l.event;
      if (l.data !== undefined) data.push(l.data);
    }
    lines.push(['', blankEol]);
    if (data.length) events.push({ event: type || 'message', data: data.join('\n') });
    else heartbeats++;
  }
  let text = '';
  for (let i = 0; i < lines.length; i++) {
    let [l, eol] = lines[i];
    const prevEol = i > 0 ? lines[i - 1][1] : '';
    // CR then an empty line ended by LF is, on the wire, one CRLF: write that empty line's end as CRLF
    if (prevEol === '\r' && l === '' && eol === '\n') eol = '\r\n';
    // the last line may not end in a lone CR: the parser waits to see whether LF follows
    if (i === lines.length - 1 && eol === '\r') eol = '\r\n';
    text += l + eol;
  }
  return { text, events, heartbeats };
});

describe('SSE parser properties', () => {
  it('a random event stream with mixed CR, LF and CRLF gives exactly its events and heartbeats, however it is chunked', () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 12 }), ({ text, events, heartbeats }, points) => {
        assert.deepEqual(parse([text]), { events, heartbeats });
        assert.deepEqual(parse(cut(text, points)), { events, heartbeats });
      }),
      fuzzParameters(400),
    );
  });

  it('one character at a time gives the same as one chunk', () => {
    fc.assert(
      fc.property(stream, ({ text, events, heartbeats }) => {
        assert.deepEqual(parse([...text]), { events, heartbeats });
      }),
      fuzzParameters(100),
    );
  });

  it('any text never throws, and however it is chunked gives the same events as one chunk', () => {
    const piece = fc.oneof(fc.constantFrom('\r', '\n', '\r\n', ':', ' ', 'data', 'event', 'data:', 'event:', 'x'), fc.string({ unit: 'binary', maxLength: 6 }));
    const text = fc.array(piece, { maxLength: 40 }).map((p) => p.join(''));
    fc.assert(
      fc.property(text, fc.array(fc.nat(), { maxLength: 12 }), (t, points) => {
        const whole = parse([t]);
        for (const e of whole.events) assert.ok(typeof e.event === 'string' && typeof e.data === 'string' && e.event.length > 0);
        assert.deepEqual(parse(cut(t, points)), whole);
      }),
      fuzzParameters(400),
    );
  });

  it('formatSseEvent -> SseParser gives back the type and data', () => {
    const oneLine = fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => !/[\r\n]/.test(s));
    fc.assert(
      fc.property(fc.array(fc.tuple(oneLine.filter((s) => s.length > 0), oneLine), { maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }), (evs, points) => {
        const text = evs.map(([t, d]) => formatSseEvent(t, d)).join('');
        assert.deepEqual(parse(cut(text, points)).events, evs.map(([t, d]) => ({ event: t, data: d })));
      }),
      fuzzParameters(200),
    );
  });
});
