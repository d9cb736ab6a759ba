/** The store conformance suite against both implementations: the file store and a real ZooKeeper. */
import { after, before } from 'node:test';
import { FileStore } from '../../src/store/file-store';
import { ZooKeeperServer, startZooKeeper } from '../helpers/zookeeper';
import { tempDir } from '../helpers/pki';
import { describeStoreConformance } from './conformance';
import { freshUrl, open } from './zk-fixtures';

describeStoreConformance('file store', {
  async open(opts) {
    const dir = tempDir();
    return { store: await FileStore.open(dir, opts), again: (o) => FileStore.open(dir, o) };
  },
});

let zk: ZooKeeperServer;
before(async () => {
  zk = await startZooKeeper();
});
after(async () => {
  await zk?.destroy();
});

describeStoreConformance('ZooKeeper store', {
  async open(opts) {
    const url = freshUrl(zk);
    return { store: await open(url, opts), again: (o) => open(url, o) };
  },
});
