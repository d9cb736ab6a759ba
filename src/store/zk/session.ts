/**
 * One ZooKeeper session that survives its own expiry: promise-returning znode operations that
 * fail fast while disconnected, connection state with change events, and a fresh session
 * (announced to listeners, who re-register watches and ephemerals) whenever the old one expires.
 */
import { EventEmitter } from 'node:events';
import zookeeper from 'node-zookeeper-client';
import { UserError } from '../../common/errors';
import { Logger, silentLogger } from '../../common/log';
import { aclFor, ZkAuth } from './auth';

/** `auth-failed`: ZooKeeper refused the credentials and closed the session (it does not retry). */
export type ZkConnectionState = 'connecting' | 'connected' | 'disconnected' | 'expired' | 'closed' | 'auth-failed';

/** ZooKeeper cannot be reached now (or the answer was lost): nothing is known to have changed; retry later. */
export class ZkUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZkUnavailableError';
  }
}

export interface ZkSessionOptions {
  sessionTimeoutMs?: number;
  /** How long open() waits for the first connection. */
  connectTimeoutMs?: number;
  /** How long one operation may take before it is reported as unavailable. */
  opTimeoutMs?: number;
  /** Credentials to present; every znode this session creates then grants everything to them alone. */
  auth?: ZkAuth;
  logger?: Logger;
}

export interface ZkStat {
  version: number;
  numChildren: number;
  ephemeralOwner: Buffer;
}

export type ZkWatcher = (event: zookeeper.Event) => void;

const { Exception } = zookeeper;
const UNAVAILABLE = new Set([Exception.CONNECTION_LOSS, Exception.SESSION_EXPIRED, Exception.OPERATION_TIMEOUT]);

/**
 * ZooKeeper refused an operation for want of permission (NO_AUTH) or refused the session's
 * credentials (AUTH_FAILED): a one-line error for a person, since retrying changes nothing.
 */
export class ZkAuthError extends UserError {
  constructor(message: string, readonly zkCode: number) {
    super(message);
    this.name = 'ZkAuthError';
  }
}

/** The ZooKeeper error code of err (NO_NODE, NODE_EXISTS, BAD_VERSION, ...), if it is one. */
export function zkErrorCode(err: unknown): number | undefined {
  return err instanceof zookeeper.Exception ? err.getCode() : undefined;
}

export class ZkSession {
  private client: zookeeper.Client;
  private state: ZkConnectionState = 'connecting';
  private since = Date.now();
  private readonly emitter = new EventEmitter();
  private readonly sessionTimeoutMs: number;
  private readonly opTimeoutMs: number;
  private readonly log: Logger;
  private readonly auth: ZkAuth | undefined;
  /** The ACL of every znode this session creates (aclFor). */
  readonly acl: zookeeper.ACL[];

  private constructor(
    readonly servers: string,
    readonly url: string,
    opts: ZkSessionOptions,
  ) {
    this.sessionTimeoutMs = opts.sessionTimeoutMs ?? 10_000;
    this.opTimeoutMs = opts.opTimeoutMs ?? this.sessionTimeoutMs;
    this.log = opts.logger ?? silentLogger;
    this.auth = opts.auth;
    this.acl = aclFor(opts.auth);
    this.emitter.setMaxListeners(0);
    this.client = this.newClient();
    this.watchdog = setInterval(() => this.breakStuckHandshake(), 2000);
    this.watchdog.unref();
  }

  private readonly watchdog: NodeJS.Timeout;
  private stuckSocket: unknown;

  /**
   * node-zookeeper-client waits forever for the answer to its connect request once TCP is up; a
   * server that accepts while starting and never answers would keep us disconnected. Two watchdog
   * ticks on the same unanswered socket: drop it, and the client tries again.
   */
  private breakStuckHandshake(): void {
    const cm = (this.client as unknown as { connectionManager?: { socket?: { destroy(): void } } }).connectionManager;
    const socket = cm?.socket;
    if (this.state === 'connected' || this.state === 'closed' || !socket) {
      this.stuckSocket = undefined;
      return;
    }
    if (this.stuckSocket === socket) {
      this.log.debug('ZooKeeper handshake unanswered; reconnecting', { store: this.url });
      this.stuckSocket = undefined;
      socket.destroy();
    } else {
      this.stuckSocket = socket;
    }
  }

  /**
   * Connects; fails with a one-line UserError if ZooKeeper does not answer within
   * connectTimeoutMs or refuses the credentials. ZooKeeper answers the credentials after the
   * session is established (and then closes it on AUTH_FAILED), so one round trip after
   * connecting tells whether they were taken.
   */
  static async open(servers: string, url: string, opts: ZkSessionOptions = {}): Promise<ZkSession> {
    const session = new ZkSession(servers, url, opts);
    const timeoutMs = opts.connectTimeoutMs ?? 15_000;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        session.shutdown();
        reject(new UserError(`cannot reach ZooKeeper at ${servers} within ${timeoutMs} ms; check the --store URL and that ZooKeeper is running`));
      }, timeoutMs);
      const off = session.onState((s) => {
        if (s !== 'connected' && s !== 'auth-failed') return;
        clearTimeout(t);
        off();
        resolve();
      });
    });
    if (opts.auth) {
      try {
        if (session.state !== 'auth-failed') await session.exists('/');
      } catch {
        // reported below when it was the credentials
      }
      if (session.state === 'auth-failed') {
        session.shutdown();
        throw session.authFailed();
      }
    }
    return session;
  }

  private authFailed(): ZkAuthError {
    return new ZkAuthError(`ZooKeeper at ${this.servers} refused the credentials (AUTH_FAILED, ${this.auth?.describe}); check the file and the ensemble's authentication providers`, Exception.AUTH_FAILED);
  }

  /** The ACL and stat of a znode, or undefined when it does not exist. */
  getAcl(path: string): Promise<{ acl: zookeeper.ACL[]; stat: ZkStat } | undefined> {
    return this.run(`read the ACL of ${path}`, (c, done) =>
      c.getACL(path, (err, acl, stat) => (zkErrorCode(err) === Exception.NO_NODE ? done(null, undefined) : done(err, err ? undefined : { acl, stat: stat as unknown as ZkStat }))),
    );
  }

  /** Sets this session's ACL (acl) on an existing znode; false when it no longer exists. */
  setAcl(path: string): Promise<boolean> {
    return this.run(`set the ACL of ${path}`, (c, done) =>
      c.setACL(path, this.acl, -1, (err: unknown) => (zkErrorCode(err) === Exception.NO_NODE ? done(null, false) : done(err, true))),
    );
  }

  get connectionState(): ZkConnectionState {
    return this.state;
  }

  /** Listens to connection state changes; returns the unsubscribe function. */
  onState(cb: (state: ZkConnectionState) => void): () => void {
    this.emitter.on('state', cb);
    return () => this.emitter.off('state', cb);
  }

  /** Called after a new session replaced an expired one: watches and ephemerals of the old one are gone. */
  onNewSession(cb: () => void): () => void {
    this.emitter.on('session', cb);
    return () => this.emitter.off('session', cb);
  }

  /** Id and password of the current session (tests use them to expire it). */
  credentials(): { sessionId: Buffer; sessionPassword: Buffer } {
    return { sessionId: this.client.getSessionId(), sessionPassword: this.client.getSessionPassword() };
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const client = this.client;
    const closed = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      client.once('disconnected', () => {
        clearTimeout(t);
        resolve();
      });
    });
    const wasConnected = this.state === 'connected';
    this.shutdown();
    if (wasConnected) await closed; // lets the close-session request reach the server, so ephemerals go now
  }

  getData(path: string, watcher?: ZkWatcher): Promise<{ data: Buffer; stat: ZkStat } | undefined> {
    return this.run(`read ${path}`, (c, done) => {
      const cb = (err: unknown, data: Buffer, stat: ZkStat) =>
        zkErrorCode(err) === Exception.NO_NODE ? done(null, undefined) : done(err, err ? undefined : { data: data ?? Buffer.alloc(0), stat });
      if (watcher) c.getData(path, watcher, cb);
      else c.getData(path, cb);
    });
  }

  getChildren(path: string, watcher?: ZkWatcher): Promise<string[] | undefined> {
    return this.run(`list ${path}`, (c, done) => {
      const cb = (err: unknown, children: string[]) =>
        zkErrorCode(err) === Exception.NO_NODE ? done(null, undefined) : done(err, children);
      if (watcher) c.getChildren(path, watcher, cb);
      else c.getChildren(path, cb);
    });
  }

  exists(path: string, watcher?: ZkWatcher): Promise<ZkStat | undefined> {
    return this.run(`stat ${path}`, (c, done) => {
      const cb = (err: unknown, stat: ZkStat) => done(err, stat ?? undefined);
      if (watcher) c.exists(path, watcher, cb);
      else c.exists(path, cb);
    });
  }

  /**
   * Creates a znode with this session's ACL; rejects with NODE_EXISTS / NO_NODE as ZooKeeper
   * says. Returns the created path. Every znode citadel makes is made here or by mkdirp, so each
   * gets the ACL.
   */
  create(path: string, data: Buffer, mode: number = zookeeper.CreateMode.PERSISTENT): Promise<string> {
    return this.run(`create ${path}`, (c, done) => c.create(path, data, this.acl, mode, done));
  }

  /** Writes data if the version matches (-1: any); rejects with BAD_VERSION / NO_NODE. */
  setData(path: string, data: Buffer, version: number): Promise<ZkStat> {
    return this.run(`write ${path}`, (c, done) => c.setData(path, data, version, done));
  }

  /** Deletes if the version matches (-1: any); rejects with BAD_VERSION / NO_NODE / NOT_EMPTY. */
  remove(path: string, version: number): Promise<void> {
    return this.run(`delete ${path}`, (c, done) => c.remove(path, version, (err: unknown) => done(err, undefined)));
  }

  /** Creates `path` and its missing ancestors, each with this session's ACL. */
  mkdirp(path: string): Promise<void> {
    return this.run(`create ${path}`, (c, done) => c.mkdirp(path, this.acl, (err: unknown) => done(err, undefined)));
  }

  private run<T>(what: string, call: (client: zookeeper.Client, done: (err: unknown, value: T) => void) => void): Promise<T> {
    if (this.state !== 'connected') {
      const ago = Math.round((Date.now() - this.since) / 1000);
      return Promise.reject(
        new ZkUnavailableError(`ZooKeeper ${this.servers} is ${this.state} (for ${ago}s): cannot ${what}; retry when it is reachable`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new ZkUnavailableError(`ZooKeeper ${this.servers} did not answer within ${this.opTimeoutMs} ms: ${what} has an unknown outcome; retry`));
      }, this.opTimeoutMs);
      call(this.client, (err, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const code = zkErrorCode(err);
        if (code !== undefined && UNAVAILABLE.has(code)) {
          reject(new ZkUnavailableError(`ZooKeeper ${this.servers} connection lost: ${what} has an unknown outcome; retry`));
        } else if (code === Exception.NO_AUTH) {
          const hint = this.auth
            ? `its ACL does not grant ${this.auth.describe}; pass the credentials the store was secured with`
            : 'the store is secured with ZooKeeper ACLs; pass --zk-auth-file with its credentials';
          reject(new ZkAuthError(`ZooKeeper ${this.servers} refused to ${what}: not authorized (NO_AUTH): ${hint}`, code));
        } else if (code === Exception.AUTH_FAILED) {
          reject(this.authFailed());
        } else if (err) {
          reject(err);
        } else {
          resolve(value);
        }
      });
    });
  }

  private newClient(): zookeeper.Client {
    const client = zookeeper.createClient(this.servers, { sessionTimeout: this.sessionTimeoutMs, spinDelay: 200, retries: 0 });
    // Sent with every connect request of this client (a reconnect included); a new session after expiry is a new client.
    if (this.auth) client.addAuthInfo(this.auth.scheme, this.auth.credentials);
    client.on('authenticationFailed', () => {
      if (client !== this.client || this.state === 'closed') return;
      this.log.error('ZooKeeper refused the credentials (AUTH_FAILED); the store is unavailable until citadel restarts with the right --zk-auth-file', { store: this.url });
      this.setState('auth-failed');
    });
    client.on('connected', () => {
      if (client !== this.client) return;
      const renewed = this.state === 'expired';
      this.setState('connected');
      if (renewed) this.emitter.emit('session');
    });
    client.on('disconnected', () => {
      if (client === this.client && this.state !== 'closed' && this.state !== 'expired' && this.state !== 'auth-failed') this.setState('disconnected');
    });
    client.on('expired', () => {
      if (client !== this.client || this.state === 'closed') return;
      this.log.warn('ZooKeeper session expired; starting a new one', { store: this.url });
      this.setState('expired');
      client.close();
      this.client = this.newClient();
    });
    client.connect();
    return client;
  }

  private setState(state: ZkConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    this.since = Date.now();
    this.log.info('ZooKeeper connection state', { store: this.url, state });
    this.emitter.emit('state', state);
  }

  private shutdown(): void {
    clearInterval(this.watchdog);
    this.setState('closed');
    this.client.close();
  }
}
