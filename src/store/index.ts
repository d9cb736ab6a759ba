import { UserError } from '../common/errors';
import type { Logger } from '../common/log';
import { FileStore } from './file-store';
import { Store, StoreOptions } from './store';
import type { ZkAuth } from './zk/auth';
import { openZkStore } from './zk/zk-store';

export const DEFAULT_STORE_URL = 'file:./citadel-data';

export interface OpenStoreOptions extends StoreOptions {
  /** Hears ZooKeeper's connection and election changes. */
  logger?: Logger;
  /** `--zk-auth-file`: ZooKeeper credentials (zk:// stores only). */
  zkAuth?: ZkAuth;
}

/** Opens a store from its URL: `file:<dir>` or `zk://host:port[,host:port]/<chroot>`. */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (url.startsWith('file:')) {
    const dir = url.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    if (!dir) throw new UserError(`store URL "${url}" names no directory; write file:<dir>`);
    if (opts.zkAuth) throw new UserError(`--zk-auth-file is for zk:// stores; ${url} is a directory (protect it with file permissions)`);
    return FileStore.open(dir, { kek: opts.kek, exclusive: opts.exclusive });
  }
  if (url.startsWith('zk://')) return openZkStore(url, { kek: opts.kek, logger: opts.logger, auth: opts.zkAuth });
  throw new UserError(`store URL "${url}" is not supported; use file:<dir> or zk://host:port[,host:port]/<chroot>`);
}
