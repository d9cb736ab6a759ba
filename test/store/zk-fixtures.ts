/** Sample secrets and stores for the ZooKeeper store tests. */
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../src/common/log';
import { SECRET_TYPE, Secret } from '../../src/store/store';
import { openZkStore, ZkStore, ZkStoreOptions } from '../../src/store/zk/zk-store';
import { ZooKeeperServer } from '../helpers/zookeeper';

export function sampleSecret(namespace: string, sa: string, serial = randomBytes(8).toString('hex')): Secret {
  return {
    namespace,
    name: `istio.${sa}`,
    certChainPem: `-----BEGIN CERTIFICATE-----\n${serial}\n-----END CERTIFICATE-----\n`,
    keyPem: `-----BEGIN PRIVATE KEY-----\n${randomBytes(32).toString('base64')}\n-----END PRIVATE KEY-----\n`,
    rootCertPem: '-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n',
    metadata: {
      type: SECRET_TYPE,
      serviceAccount: sa,
      spiffeId: `spiffe://cluster.local/ns/${namespace}/sa/${sa}`,
      notBefore: '2024-01-01T00:00:00.000Z',
      notAfter: '2024-01-02T00:00:00.000Z',
      serialNumber: serial,
      updatedAt: new Date().toISOString(),
    },
  };
}

let chroots = 0;
/** A fresh chroot per call so tests sharing one server never see each other's data. */
export function freshUrl(zk: ZooKeeperServer, query = ''): string {
  return zk.url(`/t${process.pid}-${++chroots}`) + query;
}

export function open(url: string, opts: ZkStoreOptions = {}): Promise<ZkStore> {
  const logger = process.env.CITADEL_TEST_LOG ? createLogger({ format: 'text', level: 'debug' }) : undefined;
  return openZkStore(url, { sessionTimeoutMs: 4000, connectTimeoutMs: 15_000, logger, ...opts });
}
