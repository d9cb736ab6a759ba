import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { SseParser, formatSseEvent, type ServerSentEvent } from '../../src/marathon/sse';
import { sharedMarathonDir } from '../helpers/marathon-sim';

function parseAll(chunks: string[]): { events: ServerSentEvent[]; heartbeats: number } {
  const events: ServerSentEvent[] = [];
  const p = new SseParser((e) => events.push(e));
  for (const c of chunks) p.push(c);
  return { events, heartbeats: p.heartbeats };
}

describe('SseParser', () => {
  const stream = formatSseEvent('a', '{"x":1}') + '\r\n' + formatSseEvent('b', '{"y":2}') + '\r\n\r\n';

  it('reads CRLF framing and counts bare CRLF heartbeats', () => {
    const { events, heartbeats } = parseAll([stream]);
    assert.deepEqual(events, [{ event: 'a', data: '{"x":1}' }, { event: 'b', data: '{"y":2}' }]);
    assert.equal(heartbeats, 3);
  });

  it('gives the same result whatever the chunking, even a CR and its LF split apart', () => {
    for (let size = 1; size <= 7; size++) {
      const chunks: string[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.slice(i, i + size));
      const { events, heartbeats } = parseAll(chunks);
      assert.equal(events.length, 2, `chunk size ${size}`);
      assert.equal(heartbeats, 3, `chunk size ${size}`);
    }
  });

  it('reads the LF-framed transcript from Marathon docs (events.txt)', () => {
    const text = fs.readFileSync(path.join(sharedMarathonDir, 'examples', 'events.txt'), 'utf8');
    const { events } = parseAll([text]);
    assert.deepEqual(events.map((e) => e.event), ['event_stream_attached', 'status_update_event', 'status_update_event']);
    assert.equal(JSON.parse(events[1].data).taskStatus, 'TASK_FAILED');
  });

  it('joins multi-line data, ignores comments and keeps no event type across events', () => {
    const { events } = parseAll([': hi\nevent: x\ndata: 1\ndata: 2\n\ndata: 3\n\n']);
    assert.deepEqual(events, [{ event: 'x', data: '1\n2' }, { event: 'message', data: '3' }]);
  });
});
