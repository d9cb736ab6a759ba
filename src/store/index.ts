import { UserError } from '../common/errors';
import type { Logger } from '../common/log';
import { FileStore } from './file-store';
import { Store, StoreOptions } from './store';
import { openZkStore } from './zk/zk-store';

export const DEFAULT_STORE_URL = 'file:./citadel-data';

/** Opens a store from its URL: `file:<dir>` or `zk://host:port[,host:port]/<chroot>`; the logger hears ZooKeeper's connection and election changes. */
export async function openStore(url: string, opts: StoreOptions & { logger?: Logger } = {}): Promise<Store> {
  if (url.startsWith('file:')) {
    const dir = url.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    if (!dir) throw new UserError(`store URL "${url}" names no directory; write file:<dir>`);
    return FileStore.open(dir, { kek: opts.kek });
  }
  if (url.startsWith('zk://')) return openZkStore(url, opts);
  throw new UserError(`store URL "${url}" is not supported; use file:<dir> or zk://host:port[,host:port]/<chroot>`);
}
