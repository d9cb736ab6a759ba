/** Inputs found while writing the SSE properties, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inWorker } from '../in-worker';

/**
 * Pushes one `data:` line of `size` characters in `chunk`-character pieces, in a worker, so that a
 * parser that rescans its buffer on every push (quadratic) fails the test instead of stalling it.
 */
function longLineInWorker(size: number, chunk: number, timeoutMs = 30_000): Promise<{ events: number; length: number }> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { SseParser } = require(workerData.sse);
    const text = 'data: ' + 'x'.repeat(workerData.size) + '\\r\\n\\r\\n';
    const seen = [];
    const p = new SseParser((e) => seen.push(e.data.length));
    for (let i = 0; i < text.length; i += workerData.chunk) p.push(text.slice(i, i + workerData.chunk));
    parentPort.postMessage({ events: seen.length, length: seen[0] });`;
  return inWorker(source, { sse: require.resolve('../../../src/marathon/sse'), size, chunk }, `a ${size}-character line in ${chunk}-character chunks`, timeoutMs);
}

describe('SSE parser: inputs found', () => {
  it('a 32 MB event line arriving in 16 KB chunks parses (each push used to rescan the whole line)', async () => {
    // measured before the fix: 8 MB in 16 KB chunks took 9.4 s, 16 MB 35 s (quadratic); after, 16 MB takes 0.08 s
    assert.deepEqual(await longLineInWorker(32 << 20, 16 << 10), { events: 1, length: 32 << 20 });
  });
});
