/**
 * The demo's Mesos agents on this one machine: each host's filesystem is a directory
 * (`<root>/<host>`), so the node agent on every host keeps the default paths of a real cluster
 * (/var/run/citadel/sds, /var/lib/citadel/certs) and definitions carry those paths unchanged. A
 * path on a host, as this machine sees it, is that directory joined with the path.
 */
import * as path from 'node:path';
import { NodeAgent } from '../../agent/node-agent';
import { silentLogger } from '../../common/log';
import { DEFAULT_CERTS_DIR, DEFAULT_SDS_DIR, identityDirectory } from '../../mesh/bootstrap/contract';
import { newJoinToken } from '../../server/join-token';
import type { Store } from '../../store/store';

export interface DemoHostsOptions {
  root: string;
  hosts: readonly string[];
  /** where join tokens go (the server's store) */
  store: Store;
  caAddress: string;
  caRootPem: string;
  xdsAddress: string;
}

export class DemoHosts {
  private constructor(private readonly root: string, private readonly agents: ReadonlyMap<string, NodeAgent>) {}

  /** A join token per host, then `citadel agent --sds-dir --certs-dir` on each (SDS with the xds socket, and files). */
  static async start(o: DemoHostsOptions): Promise<DemoHosts> {
    const agents = new Map<string, NodeAgent>();
    const hosts = new DemoHosts(o.root, agents);
    try {
      await Promise.all(o.hosts.map(async (host) => {
        const token = newJoinToken(host, 60_000);
        await o.store.putJoinToken(token.record);
        const agent = new NodeAgent({
          caAddress: o.caAddress,
          caRootPem: o.caRootPem,
          joinToken: token.token,
          host,
          certsDir: hosts.local(host, DEFAULT_CERTS_DIR),
          sds: { sdsDir: hosts.local(host, DEFAULT_SDS_DIR), xdsAddress: o.xdsAddress },
          stateDir: hosts.local(host, '/var/lib/citadel/agent'),
          logger: silentLogger,
        });
        agents.set(host, agent);
        await agent.start();
      }));
    } catch (err) {
      await hosts.stop();
      throw err;
    }
    return hosts;
  }

  get hostnames(): string[] {
    return [...this.agents.keys()];
  }

  /** `hostPath` on `host`, as this machine sees it. */
  local(host: string, hostPath: string): string {
    return path.join(this.root, host, hostPath);
  }

  /** The identity's SDS directory (its `socket` and `xds`) on `host`, as this machine sees it. */
  sdsDir(host: string, namespace: string, serviceAccount: string): string {
    return this.local(host, identityDirectory(DEFAULT_SDS_DIR, namespace, serviceAccount));
  }

  /** The identity's files directory on `host`, as this machine sees it. */
  certsDir(host: string, namespace: string, serviceAccount: string): string {
    return this.local(host, identityDirectory(DEFAULT_CERTS_DIR, namespace, serviceAccount));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.stop().catch(() => undefined)));
  }
}
