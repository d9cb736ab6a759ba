import { UserError } from '../../common/errors';
import { parseDuration } from '../../common/duration';

/** A parsed `zk://host:port[,host:port...]/<chroot>[?sessionTimeout=10s]` store URL. */
export interface ZkTarget {
  /** `host:port,host:port`, as the client connects. */
  servers: string;
  /** Absolute path under which everything lives, e.g. `/citadel`; never `/`. */
  chroot: string;
  sessionTimeoutMs?: number;
  /** The URL as shown in logs and errors. */
  url: string;
}

const HOST_PORT = /^(?:[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;
const SEGMENT = /^[A-Za-z0-9_][-A-Za-z0-9_.]*$/;

export function parseZkUrl(url: string): ZkTarget {
  const bad = (why: string) =>
    new UserError(`store URL "${url}": ${why}; write it like zk://zk1:2181,zk2:2181,zk3:2181/citadel`);
  const m = /^zk:\/\/([^/?]+)(\/[^?]*)?(?:\?(.*))?$/.exec(url);
  if (!m) throw bad('not a zk:// URL');
  const [, hosts, chrootRaw = '', query] = m;
  if (hosts.includes('@')) throw bad('credentials in the URL are not supported');
  const servers = hosts.split(',');
  for (const s of servers) if (!HOST_PORT.test(s)) throw bad(`"${s}" is not host:port`);
  const chroot = chrootRaw.replace(/\/+$/, '');
  if (!chroot) throw bad('a chroot path is required so citadel does not write at the root of ZooKeeper');
  for (const seg of chroot.slice(1).split('/')) if (!SEGMENT.test(seg)) throw bad(`chroot segment "${seg}" is not allowed`);
  let sessionTimeoutMs: number | undefined;
  for (const [key, value] of new URLSearchParams(query ?? '')) {
    if (key === 'sessionTimeout') sessionTimeoutMs = parseDuration(value, 'sessionTimeout');
    else throw bad(`unknown parameter "${key}" (known: sessionTimeout)`);
  }
  return { servers: servers.join(','), chroot, sessionTimeoutMs, url: `zk://${servers.join(',')}${chroot}` };
}
