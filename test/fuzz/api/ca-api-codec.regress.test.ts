/** Inputs the gRPC codec properties found, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { codec } from '../../../src/api/ca-api';
import { inWorker } from '../in-worker';

/** Decodes in a worker, so that a decoder that never returns fails the test instead of hanging it. */
function decodeInWorker(type: keyof typeof codec, bytes: Buffer, timeoutMs = 20_000): Promise<{ error?: string; name?: string }> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { codec } = require(workerData.api);
    try { codec[workerData.type].decode(Buffer.from(workerData.bytes)); parentPort.postMessage({}); }
    catch (err) { parentPort.postMessage({ error: err.message, name: err.name }); }`;
  return inWorker(source, { api: require.resolve('../../../src/api/ca-api'), type, bytes }, `${type}.decode(${bytes.toString('hex')})`, timeoutMs);
}

describe('gRPC codec: inputs the properties found', () => {
  it('a length prefix that is a negative 64-bit varint is refused, and never sends the reader back into the message', async () => {
    // 0a + varint(-11): field 1, length -11 took pos from 11 back to 0, forever
    const back = Buffer.from('0af5ffffffffffffffff01', 'hex');
    assert.equal((await decodeInWorker('IstioCertificateRequest', back)).name, 'ProtoDecodeError');
    // 0a + varint(-1) read a key out of the length's own last byte
    assert.throws(() => codec.SecretsUpdate.decode(Buffer.from('0affffffffffffffffff01', 'hex')), { name: 'ProtoDecodeError', message: /negative field length|length -1/ });
  });
});
