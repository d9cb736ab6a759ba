/**
 * The ZooKeeper store's policy set: one znode `<chroot>/policies`, written by compare-and-set on
 * its znode version, watched by a data watch (exists(), which also fires on create and delete)
 * re-armed each time it fires and after every reconnect or new session.
 *
 * Set versions are znode versions plus one, so that 0 means "no znode yet".
 */
import zookeeper from 'node-zookeeper-client';
import { ConflictError, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/log';
import type { CanonicalPolicy } from '../../mesh/policy';
import { decodePolicySet, encodePolicySet } from '../policy-set';
import type { PolicyEvent, StoredPolicies } from '../store';
import { ZkSession, ZkStat, zkErrorCode } from './session';

const { Exception } = zookeeper;

export class ZkPolicies {
  private readonly listeners = new Set<(e: PolicyEvent) => void>();
  /** The version listeners were last told of, or found by the first arming; undefined: not known yet. */
  private seen: number | undefined;
  /** Whether the first arming (which learns the version, and tells no one) was sent. */
  private armed = false;
  private stopState?: () => void;
  private readonly onZkEvent = () => this.arm();

  /** `create` is the store's own znode create, so that whatever the store sets on new znodes (ACLs) applies here too. */
  constructor(
    private readonly session: ZkSession,
    readonly path: string,
    private readonly create: (path: string, data: Buffer) => Promise<unknown>,
    private readonly log: Logger,
  ) {}

  async get(): Promise<StoredPolicies> {
    const got = await this.session.getData(this.path);
    if (!got) return { documents: [], version: 0 };
    return { documents: decodePolicySet(`znode ${this.path}`, got.data), version: got.stat.version + 1 };
  }

  async put(documents: readonly CanonicalPolicy[], expectedVersion: number): Promise<number> {
    if (!Number.isSafeInteger(expectedVersion) || expectedVersion < 0) throw new Error(`a policy set version is a whole number from 0, not ${expectedVersion}`);
    const data = encodePolicySet(documents);
    try {
      if (expectedVersion === 0) {
        await this.create(this.path, data);
        return 1;
      }
      return (await this.session.setData(this.path, data, expectedVersion - 1)).version + 1;
    } catch (err) {
      const code = zkErrorCode(err);
      if (code === Exception.NODE_EXISTS) throw new ConflictError('the policy set changed: it was stored by another writer since it was read; re-read it and retry');
      if (code === Exception.BAD_VERSION) throw new ConflictError(`the policy set changed: it is no longer version ${expectedVersion}; re-read it and retry`);
      if (code === Exception.NO_NODE) throw new ConflictError(`the policy set znode ${this.path} was deleted since it was read; re-read it and retry`);
      throw err;
    }
  }

  watch(listener: (e: PolicyEvent) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  stop(): void {
    this.stopState?.();
    this.stopState = undefined;
    this.seen = undefined;
    this.armed = false;
  }

  private start(): void {
    let wasDown = false;
    this.stopState = this.session.onState((state) => {
      if (state !== 'connected') wasDown = true;
      else if (wasDown) {
        // A new session has none of the old one's watches; after a reconnect, changes may have been missed.
        wasDown = false;
        this.arm();
      }
    });
    // Sent now, before any read the subscriber makes next: ZooKeeper answers a session in order.
    this.arm();
  }

  /** (Re-)arms the data watch and tells listeners if the version moved since they last heard. */
  private arm(): void {
    if (!this.stopState) return;
    const baseline = !this.armed;
    this.armed = true;
    this.session.exists(this.path, this.onZkEvent).then(
      (stat: ZkStat | undefined) => this.tell(stat ? stat.version + 1 : 0, baseline),
      (err) => this.log.debug('policy watch not armed; re-armed on reconnect', { error: errorMessage(err) }),
    );
  }

  private tell(version: number, baseline: boolean): void {
    if (!this.stopState || version === this.seen) return;
    this.seen = version;
    // When the first arming failed, a later one does not know what the subscriber read: it tells.
    if (baseline) return;
    const event: PolicyEvent = { type: 'policies', version };
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        this.log.error('policy watch listener threw', { error: errorMessage(err) });
      }
    }
  }
}
