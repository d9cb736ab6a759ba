/**
 * A real ZooKeeper server (Debian's libzookeeper-java) as a child process, for integration
 * tests and benchmarks: free port, temporary dataDir, stop/restart on the same port and data.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zookeeper from 'node-zookeeper-client';
import { sleep } from '../../src/common/backoff';

const JAVA_DIR = process.env.ZOOKEEPER_JAVA_DIR ?? '/usr/share/java';
/** The server's classpath: ZooKeeper, jute, its logging, netty, commons and metrics. */
const JARS = [
  'zookeeper.jar',
  'zookeeper-jute.jar',
  'slf4j-api.jar',
  'slf4j-simple.jar',
  'netty-handler.jar',
  'netty-common.jar',
  'netty-buffer.jar',
  'netty-transport.jar',
  'netty-codec.jar',
  'netty-resolver.jar',
  'netty-transport-native-epoll.jar',
  'netty-transport-native-unix-common.jar',
  'commons-cli.jar',
  'commons-io.jar',
  'metrics-core.jar',
  'snappy-java.jar',
];

export interface ZooKeeperOptions {
  /** Milliseconds; sessions time out between 2 and 20 ticks by default, so small ticks make expiry tests fast. */
  tickTime?: number;
  /** ZooKeeper's default is to fsync every transaction; tests turn it off for speed, the benchmark keeps it. */
  forceSync?: boolean;
  /** How long to wait for the server to serve (a JVM on a loaded 2-core machine is slow). */
  startTimeoutMs?: number;
}

export class ZooKeeperServer {
  readonly dataDir: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly opts: Required<ZooKeeperOptions>,
  ) {
    this.dataDir = path.join(dir, 'data');
    this.logFile = path.join(dir, 'zookeeper.log');
  }

  static async start(opts: ZooKeeperOptions = {}): Promise<ZooKeeperServer> {
    const full = { tickTime: 100, forceSync: false, startTimeoutMs: 20_000, ...opts };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-zk-'));
    const server = new ZooKeeperServer(await freePort(), dir, full);
    writeFileSync(
      path.join(dir, 'zoo.cfg'),
      [
        `tickTime=${full.tickTime}`,
        `dataDir=${server.dataDir}`,
        `clientPort=${server.port}`,
        'clientPortAddress=127.0.0.1',
        'admin.enableServer=false',
        '4lw.commands.whitelist=ruok,srvr,stat,cons,wchs',
        `minSessionTimeout=${2 * full.tickTime}`,
        'maxSessionTimeout=60000',
        `forceSync=${full.forceSync ? 'yes' : 'no'}`,
        'maxClientCnxns=0',
        '',
      ].join('\n'),
    );
    LIVE.add(server);
    await server.startProcess();
    return server;
  }

  /** `127.0.0.1:<port>`, to put in a zk:// URL. */
  get hostPort(): string {
    return `127.0.0.1:${this.port}`;
  }

  url(chroot = '/citadel'): string {
    return `zk://${this.hostPort}${chroot}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Kills the server (like a crash: SIGKILL); data on disk stays for restart(). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    child.kill('SIGKILL');
    await this.exited;
  }

  /** Synchronous SIGKILL, for the process exit hook. */
  killNow(): void {
    this.child?.kill('SIGKILL');
  }

  /** Starts the stopped server again on the same port and dataDir. */
  async start(): Promise<void> {
    if (this.child) return;
    await this.startProcess();
  }

  /** Stops the server for `downMs`, then starts it again on the same port and dataDir. */
  async restart(downMs: number): Promise<void> {
    await this.stop();
    await sleep(downMs);
    await this.start();
  }

  /** Stops the server and removes its data. */
  async destroy(): Promise<void> {
    await this.stop();
    LIVE.delete(this);
    if (!process.env.CITADEL_KEEP_ZK) rmSync(this.dir, { recursive: true, force: true });
  }

  /** A four-letter-word command (`ruok`, `srvr`, `cons`, `wchs`); resolves with the reply. */
  fourLetterWord(cmd: string, timeoutMs = 2000): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.port, '127.0.0.1');
      let reply = '';
      socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`ZooKeeper did not answer ${cmd}`)));
      socket.on('connect', () => socket.write(cmd));
      socket.on('data', (d) => (reply += d.toString()));
      socket.on('end', () => resolve(reply));
      socket.on('error', reject);
    });
  }

  /**
   * Expires a session the way the ZooKeeper test suites do: a second client attaches to the same
   * session id and password and closes it, so the server ends the session and its ephemerals.
   */
  async expireSession(sessionId: Buffer, sessionPassword: Buffer): Promise<void> {
    // The owner reconnects at once and may take the session back before our close lands, so
    // repeat until attaching is refused as expired: then the session is really gone.
    for (let attempt = 0; attempt < 20; attempt++) {
      const options = { sessionTimeout: 2000, sessionId, sessionPassword } as Partial<zookeeper.Option>;
      const client = zookeeper.createClient(this.hostPort, options);
      const outcome = await new Promise<'connected' | 'expired' | 'timeout'>((resolve) => {
        const t = setTimeout(() => resolve('timeout'), 5000);
        client.once('connected', () => (clearTimeout(t), resolve('connected')));
        client.once('expired', () => (clearTimeout(t), resolve('expired')));
        client.connect();
      });
      client.close();
      if (outcome === 'expired') return;
      await sleep(100);
    }
    throw new Error('could not expire the session');
  }

  private async startProcess(): Promise<void> {
    const out = openSync(this.logFile, 'a');
    const classpath = JARS.map((j) => path.join(JAVA_DIR, j)).join(':');
    const child = spawn(
      'java',
      [
        '-Xmx256m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
        '-Dzookeeper.jmx.log4j.disable=true',
        '-cp',
        classpath,
        'org.apache.zookeeper.server.ZooKeeperServerMain',
        path.join(this.dir, 'zoo.cfg'),
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + this.opts.startTimeoutMs;
    while (Date.now() < deadline) {
      if (!this.child) break;
      try {
        // `ruok` says imok before the database is loaded; `srvr` reports a Mode only once it serves.
        if (/Mode: /.test(await this.fourLetterWord('srvr', 1000))) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    const log = existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').slice(-2000) : '';
    await this.stop();
    throw new Error(`ZooKeeper did not start on port ${this.port} within ${this.opts.startTimeoutMs} ms:\n${log}`);
  }
}

/** Servers still running; killed if the test process exits without destroying them. */
const LIVE = new Set<ZooKeeperServer>();
process.once('exit', () => {
  for (const server of LIVE) {
    server.killNow();
  }
});

export function startZooKeeper(opts?: ZooKeeperOptions): Promise<ZooKeeperServer> {
  return ZooKeeperServer.start(opts);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
