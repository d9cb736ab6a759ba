import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startZooKeeper } from '../helpers/zookeeper';

test('the test ZooKeeper starts, answers, stops, restarts on the same port and keeps its data', async () => {
  const zk = await startZooKeeper();
  try {
    assert.equal(await zk.fourLetterWord('ruok'), 'imok');
    const port = zk.port;
    await zk.stop();
    await assert.rejects(zk.fourLetterWord('ruok'));
    await zk.start();
    assert.equal(zk.port, port);
    assert.match(await zk.fourLetterWord('srvr'), /Mode: standalone/);
  } finally {
    await zk.destroy();
  }
});
