/**
 * Leader election among CA replicas: the ZooKeeper recipe. Each candidate creates an ephemeral
 * sequential znode under <chroot>/election; the lowest sequence leads; every other candidate
 * watches only its predecessor (no herd). A replica that is disconnected stops leading at once
 * (it cannot know whether its session survives); one whose session expired joins again.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import zookeeper from 'node-zookeeper-client';
import { Backoff, sleep } from '../../common/backoff';
import { errorMessage } from '../../common/errors';
import { Logger, silentLogger } from '../../common/log';
import type { LeaderElection } from '../store';
import { ZkSession, ZkUnavailableError } from './session';


const SEQUENCE = /-(\d{10})$/;

export class ZkLeaderElection implements LeaderElection {
  private leader = false;
  private closed = false;
  /** Our candidate znode in the current session. */
  private node: string | undefined;
  private readonly emitter = new EventEmitter();
  private readonly prefix: string;
  private readonly unsubscribe: (() => void)[] = [];
  private checking: Promise<void> = Promise.resolve();
  private recheck = false;
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 5000 });

  private constructor(
    private readonly session: ZkSession,
    private readonly dir: string,
    private readonly candidate: string,
    private readonly log: Logger,
  ) {
    // A unique prefix finds our own znode again if the create's reply was lost.
    this.prefix = `c-${randomUUID()}-`;
    this.emitter.setMaxListeners(0);
  }

  /** Joins the election; resolves once this candidate knows whether it leads (or is disconnected). */
  static async start(session: ZkSession, dir: string, candidate: string, logger: Logger = silentLogger): Promise<ZkLeaderElection> {
    const election = new ZkLeaderElection(session, dir, candidate, logger.child({ election: dir, candidate }));
    election.unsubscribe.push(
      session.onState((state) => {
        if (state === 'connected') election.trigger();
        else election.setLeader(false);
      }),
      session.onNewSession(() => {
        election.node = undefined; // the ephemeral went with the old session
        election.trigger();
      }),
    );
    await session.mkdirp(dir);
    election.trigger();
    await election.checking;
    return election;
  }

  isLeader(): boolean {
    return this.leader;
  }

  onChange(cb: (leader: boolean) => void): () => void {
    this.emitter.on('change', cb);
    return () => this.emitter.off('change', cb);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.unsubscribe) off();
    await this.checking;
    this.setLeader(false);
    const node = this.node;
    this.node = undefined;
    if (node) {
      try {
        await this.session.remove(node, -1);
      } catch (err) {
        // The ephemeral goes with the session anyway.
        this.log.debug('could not remove election znode', { node, error: errorMessage(err) });
      }
    }
    this.emitter.removeAllListeners();
  }

  /** Runs check() now, or once more after the running one: never two at a time. */
  private trigger(): void {
    if (this.closed) return;
    this.recheck = true;
    this.checking = this.checking.then(async () => {
      while (this.recheck && !this.closed) {
        this.recheck = false;
        await this.check();
      }
    });
  }

  private readonly onPredecessorEvent = () => this.trigger();

  private async check(): Promise<void> {
    try {
      const children = ((await this.session.getChildren(this.dir)) ?? []).filter((c) => SEQUENCE.test(c));
      children.sort((a, b) => Number(SEQUENCE.exec(a)![1]) - Number(SEQUENCE.exec(b)![1]));
      let mine = children.find((c) => c.startsWith(this.prefix));
      if (!mine) {
        const created = await this.session.create(`${this.dir}/${this.prefix}`, Buffer.from(this.candidate), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL);
        this.node = created;
        this.recheck = true; // list again to find our place
        return;
      }
      this.node = `${this.dir}/${mine}`;
      const index = children.indexOf(mine);
      if (index === 0) {
        this.setLeader(true);
      } else {
        this.setLeader(false);
        const predecessor = `${this.dir}/${children[index - 1]}`;
        // If the predecessor is already gone, look again; otherwise its deletion wakes us.
        if (!(await this.session.exists(predecessor, this.onPredecessorEvent))) this.recheck = true;
      }
      this.backoff.reset();
    } catch (err) {
      this.setLeader(false);
      if (err instanceof ZkUnavailableError) return; // the next 'connected' triggers a check
      this.log.warn('leader election check failed; retrying', { error: errorMessage(err) });
      await sleep(this.backoff.next());
      this.recheck = true;
    }
  }

  private setLeader(leader: boolean): void {
    if (this.leader === leader || (leader && this.closed)) return;
    this.leader = leader;
    this.log.info(leader ? 'became the leader' : 'is no longer the leader');
    this.emitter.emit('change', leader);
  }
}
