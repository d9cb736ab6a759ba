/** Server-sent events framing (the `text/event-stream` format Marathon's /v2/events speaks). */

export interface ServerSentEvent {
  /** the `event:` field; `message` when absent */
  event: string;
  data: string;
}

/** Turns a text stream into events. Lines end with CRLF, LF or CR; a blank line ends an event. */
export class SseParser {
  private buffer = '';
  /** chunks of a line still unfinished after `buffer`, joined once it ends: a long line stays linear */
  private pieces: string[] = [];
  private eventType = '';
  private data: string[] = [];
  /** blank lines that ended no event: Marathon's heartbeats */
  heartbeats = 0;

  constructor(private readonly onEvent: (e: ServerSentEvent) => void) {}

  push(chunk: string): void {
    if (chunk.indexOf('\n') < 0 && chunk.indexOf('\r') < 0 && !this.buffer.endsWith('\r')) {
      this.pieces.push(chunk);
      return;
    }
    if (this.pieces.length > 0) {
      this.buffer += this.pieces.join('');
      this.pieces = [];
    }
    this.buffer += chunk;
    let start = 0;
    const buf = this.buffer;
    for (;;) {
      let end = start;
      while (end < buf.length && buf.charCodeAt(end) !== 10 && buf.charCodeAt(end) !== 13) end++;
      if (end >= buf.length) break;
      let next = end + 1;
      if (buf.charCodeAt(end) === 13) {
        if (end + 1 >= buf.length) break; // a CR at the end of the chunk: wait to see whether LF follows
        if (buf.charCodeAt(end + 1) === 10) next = end + 2;
      }
      this.line(buf.slice(start, end));
      start = next;
    }
    this.buffer = buf.slice(start);
  }

  private line(line: string): void {
    if (line.length === 0) {
      if (this.data.length > 0) {
        const e = { event: this.eventType || 'message', data: this.data.join('\n') };
        this.eventType = '';
        this.data = [];
        this.onEvent(e);
      } else {
        this.eventType = '';
        this.heartbeats++;
      }
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'event') this.eventType = value;
    else if (field === 'data') this.data.push(value);
    // `id` and `retry` carry nothing for Marathon, which has no replay
  }
}

/** One event as Marathon writes it: `event: <type>\r\ndata: <json>\r\n\r\n`. */
export function formatSseEvent(type: string, data: string): string {
  return `event: ${type}\r\ndata: ${data}\r\n\r\n`;
}
