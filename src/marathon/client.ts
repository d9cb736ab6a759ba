/**
 * Follows Marathon: lists apps (with tasks) and pods (with instances), then keeps the view
 * current from the event bus. Events are cache invalidation: each names an app, pod or group
 * that is re-read. After every (re)connect the whole state is re-listed, since Marathon
 * replays nothing.
 */
import type { IncomingMessage } from 'node:http';
import type { Registry } from 'prom-client';
import { Backoff, sleep, type BackoffOptions } from '../common/backoff';
import { errorMessage } from '../common/errors';
import { silentLogger, type Logger } from '../common/log';
import { parseApp, parseAppList, parseGroup, parseMarathonEvent, parsePod, parsePodList, flattenGroup, MarathonParseError, MARATHON_EVENT_TYPES, type Malformed, type MarathonApp, type MarathonEvent, type MarathonPod } from './model';
import { SseParser, type ServerSentEvent } from './sse';
import { MarathonHttpError, MarathonTransport, RequestTiming, stripCredentials } from './transport';
import { MarathonView, type ViewEntry } from './view';
import { workloadOfApp, workloadOfPod } from './workload';

export interface MarathonClientOptions {
  /** Marathon base URLs (HA: tried in turn); may carry credentials and a path prefix (DC/OS /service/marathon/) */
  urls: string[];
  username?: string;
  password?: string;
  tokenFile?: string;
  caFile?: string;
  logger?: Logger;
  backoff?: BackoffOptions;
  /** a view to fill; by default the client makes its own */
  view?: MarathonView;
  /** metrics registry for the view's citadel_marathon_* metrics (only when the client makes the view) */
  registry?: Registry;
  /** reconnect when the stream is silent this long (Marathon heartbeats every ~10 s); default 35 s */
  heartbeatTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** re-reads in flight at once; default 16 */
  concurrency?: number;
  /** this many pending re-reads turn into one re-list; default 500 */
  relistThreshold?: number;
  /** delay before a re-list asked for by an event on the root group; default 250 ms */
  relistDebounceMs?: number;
}

export interface MarathonClientStats {
  connects: number;
  relists: number;
  events: number;
  heartbeats: number;
  rereads: number;
  malformed: number;
  lastListMs: number;
  /**
   * The last list's apps request, split: Marathon answering (until the response head), the body
   * arriving, JSON.parse, and turning the documents into the view. Tells a slow Marathon from a
   * slow citadel.
   */
  lastList: { answerMs: number; bodyMs: number; parseMs: number; viewMs: number; bytes: number };
}

type Invalidation = `app:${string}` | `pod:${string}` | `any:${string}` | `group:${string}`;


export class MarathonClient {
  readonly view: MarathonView;
  readonly stats: MarathonClientStats = { connects: 0, relists: 0, events: 0, heartbeats: 0, rereads: 0, malformed: 0, lastListMs: 0, lastList: { answerMs: 0, bodyMs: 0, parseMs: 0, viewMs: 0, bytes: 0 } };
  /** true while the event stream is open and the view has been re-listed since it opened */
  connected = false;
  /** the Marathon (leader) base URL in use, without credentials */
  currentUrl: string | undefined;

  private readonly urls: URL[];
  private readonly transport: MarathonTransport;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  private stream: IncomingMessage | undefined;
  private apiBase: URL | undefined;
  private loop: Promise<void> | undefined;
  private listing = false;
  /** bumped when a re-list starts: a re-read begun before it must not overwrite what it found */
  private generation = 0;
  private readonly pending = new Set<Invalidation>();
  private readonly inFlight = new Set<Invalidation>();
  private workers = 0;
  private relistTimer: NodeJS.Timeout | undefined;
  private relistRequested = false;
  private firstList: { resolve: () => void; reject: (e: Error) => void; promise: Promise<void> };
  private readonly idleWaiters: Array<() => void> = [];

  constructor(private readonly opts: MarathonClientOptions) {
    if (opts.urls.length === 0) throw new Error('at least one Marathon URL is needed');
    this.urls = opts.urls.map((u) => {
      const url = new URL(u);
      if (!url.pathname.endsWith('/')) url.pathname += '/';
      return url;
    });
    this.log = (opts.logger ?? silentLogger).child({ component: 'marathon' });
    this.view = opts.view ?? new MarathonView({ logger: this.log, registry: opts.registry });
    this.transport = new MarathonTransport(opts);
    this.backoff = new Backoff({ initialMs: 200, maxMs: 10_000, ...opts.backoff });
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {});
    this.firstList = { resolve, reject, promise };
  }

  /** Connects and resolves after the first full list; keeps following until stop(). */
  start(): Promise<void> {
    this.loop ??= this.run();
    return this.firstList.promise;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.firstList.reject(new Error('marathon client stopped'));
    this.stream?.destroy();
    clearTimeout(this.relistTimer);
    await this.loop;
    this.transport.close();
    this.connected = false;
  }

  /** Resolves once no re-read or re-list is pending or running (tests, benchmarks). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return !this.listing && this.pending.size === 0 && this.workers === 0 && !this.relistRequested;
  }

  private checkIdle(): void {
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async run(): Promise<void> {
    let index = 0;
    while (!this.abort.signal.aborted) {
      const base = this.urls[index % this.urls.length];
      let healthy = false;
      try {
        healthy = await this.session(base);
      } catch (err) {
        if (this.abort.signal.aborted) break;
        this.log.warn('marathon event stream failed', { url: stripCredentials(base), error: errorMessage(err) });
      }
      this.connected = false;
      this.stream = undefined;
      if (this.abort.signal.aborted) break;
      if (healthy) this.backoff.reset();
      else index++; // this Marathon did not serve us: try the next one
      await sleep(this.backoff.next(), this.abort.signal);
    }
  }

  /** One connection to the event bus: open, re-list, apply events until it ends. True if it got as far as a re-list. */
  private async session(base: URL): Promise<boolean> {
    let url = new URL('v2/events', base);
    let res: IncomingMessage;
    for (let hops = 0; ; hops++) {
      res = await this.transport.open(url, { accept: 'text/event-stream', keepAlive: false, signal: this.abort.signal });
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location && hops < 5) {
        res.resume();
        // a standby points at the leader; keep our credentials for it
        const next = new URL(res.headers.location, url);
        if (!next.username && url.username) {
          next.username = url.username;
          next.password = url.password;
        }
        this.log.info('marathon redirected the event stream', { from: stripCredentials(url), to: stripCredentials(next) });
        url = next;
        continue;
      }
      if (status !== 200) {
        res.setEncoding('utf8');
        let body = '';
        for await (const c of res) body += c as string;
        throw new MarathonHttpError(status, stripCredentials(url), body);
      }
      break;
    }
    const apiBase = new URL(url.href);
    apiBase.pathname = apiBase.pathname.replace(/v2\/events$/, '');
    apiBase.search = '';
    this.apiBase = apiBase;
    this.currentUrl = stripCredentials(apiBase);
    this.stream = res;
    this.stats.connects++;
    this.log.info('marathon event stream open', { url: this.currentUrl });

    let lastData = Date.now();
    const parser = new SseParser((e) => this.onEvent(e));
    const timeoutMs = this.opts.heartbeatTimeoutMs ?? 35_000;
    const watchdog = setInterval(() => {
      if (Date.now() - lastData > timeoutMs) {
        this.log.warn('marathon event stream silent, reconnecting', { silentMs: Date.now() - lastData });
        res.destroy();
      }
    }, Math.max(10, Math.min(1000, timeoutMs / 4)));
    const ended = new Promise<void>((resolve) => {
      res.on('close', resolve);
      res.on('end', resolve);
      res.on('error', resolve);
    });
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      lastData = Date.now();
      const before = parser.heartbeats;
      parser.push(chunk);
      this.stats.heartbeats += parser.heartbeats - before;
    });

    let healthy = false;
    try {
      // events that arrive while listing wait in `pending` and are re-read after the list
      await this.relist();
      healthy = true;
      this.connected = true;
      this.firstList.resolve();
      this.kick();
      await ended;
    } catch (err) {
      if (!this.abort.signal.aborted) this.log.warn('marathon re-list failed', { url: this.currentUrl, error: errorMessage(err) });
      res.destroy();
    } finally {
      clearInterval(watchdog);
    }
    if (!this.abort.signal.aborted) this.log.warn('marathon event stream closed', { url: this.currentUrl });
    return healthy;
  }

  private api(path: string): URL {
    return new URL(path, this.apiBase);
  }

  /** Lists everything and replaces the view. */
  private async relist(): Promise<void> {
    this.listing = true;
    this.generation++;
    const started = Date.now();
    try {
      const timing: RequestTiming = { answerMs: 0, bodyMs: 0, parseMs: 0, bytes: 0 };
      const [appsJson, podsJson] = await Promise.all([
        this.transport.getJson(this.api('v2/apps?embed=apps.tasks'), timing),
        this.transport.getJson(this.api('v2/pods/::status')),
      ]);
      const viewStarted = performance.now();
      const malformed: Malformed[] = [];
      if (appsJson === undefined) throw new Error('GET /v2/apps answered 404: is this Marathon?');
      const apps = parseAppList(appsJson, malformed);
      const pods = podsJson === undefined ? [] : parsePodList(podsJson, malformed); // no pods before Marathon 1.4
      this.reportMalformed(malformed, 'list');
      const entries: ViewEntry[] = [];
      for (const a of apps) entries.push(workloadOfApp(a));
      for (const p of pods) entries.push(workloadOfPod(p));
      this.view.replaceAll(entries);
      this.stats.relists++;
      this.stats.lastListMs = Date.now() - started;
      const ms = (v: number) => Math.round(v);
      this.stats.lastList = { answerMs: ms(timing.answerMs), bodyMs: ms(timing.bodyMs), parseMs: ms(timing.parseMs), viewMs: ms(performance.now() - viewStarted), bytes: timing.bytes };
      this.log.info('marathon listed', { apps: apps.length, pods: pods.length, malformed: malformed.length, ms: this.stats.lastListMs, ...this.stats.lastList });
    } finally {
      this.listing = false;
    }
  }

  private reportMalformed(malformed: Malformed[], source: string): void {
    for (const m of malformed) {
      this.stats.malformed++;
      this.log.warn(`skipping malformed marathon ${m.kind}`, { source, path: m.path, ...(m.id !== undefined ? { id: m.id } : {}), reason: m.reason });
    }
  }

  private onEvent(e: ServerSentEvent): void {
    this.stats.events++;
    if (!MARATHON_EVENT_TYPES.has(e.event)) return;
    let event: MarathonEvent | undefined;
    try {
      event = parseMarathonEvent(e.event, JSON.parse(e.data));
    } catch (err) {
      this.log.warn('marathon event with malformed data', { event: e.event, error: errorMessage(err) });
      return;
    }
    if (event) for (const inv of invalidationsOf(event)) this.invalidate(inv);
  }

  private invalidate(inv: Invalidation): void {
    if (inv.startsWith('any:')) {
      // known ids coalesce with the app:/pod: re-reads other events of the same change asked for
      const id = inv.slice(4);
      if (this.view.get('app', id)) inv = `app:${id}`;
      else if (this.view.get('pod', id)) inv = `pod:${id}`;
    }
    if (inv === 'group:/') {
      this.requestRelist();
      return;
    }
    this.pending.add(inv);
    if (this.pending.size > (this.opts.relistThreshold ?? 500)) {
      this.pending.clear();
      this.requestRelist(0);
      return;
    }
    this.kick();
  }

  private requestRelist(delayMs = this.opts.relistDebounceMs ?? 250): void {
    this.relistRequested = true;
    if (this.relistTimer) return;
    this.relistTimer = setTimeout(() => {
      this.relistTimer = undefined;
      if (this.listing || !this.connected) {
        // a list is running (or the reconnect will list): it may predate the event, so list again after
        if (this.connected || this.listing) this.requestRelist(delayMs);
        else this.relistRequested = false;
        return;
      }
      this.relistRequested = false;
      this.pending.clear();
      this.relist()
        .catch((err) => {
          this.log.warn('marathon re-list failed, reconnecting', { error: errorMessage(err) });
          this.stream?.destroy();
        })
        .finally(() => {
          this.kick();
          this.checkIdle();
        });
    }, delayMs);
  }

  /** Starts re-read workers up to the concurrency limit. */
  private kick(): void {
    if (this.listing || !this.connected) return this.checkIdle();
    const limit = this.opts.concurrency ?? 16;
    while (this.workers < limit && this.nextPending() !== undefined) {
      this.workers++;
      void this.worker().finally(() => {
        this.workers--;
        this.checkIdle();
      });
    }
    this.checkIdle();
  }

  /** Apps and pods first: a group re-read is the slower safety net for the same change. */
  private nextPending(): Invalidation | undefined {
    let group: Invalidation | undefined;
    for (const k of this.pending) {
      if (this.inFlight.has(k)) continue;
      if (!k.startsWith('group:')) return k;
      group ??= k;
    }
    return group;
  }

  private async worker(): Promise<void> {
    for (;;) {
      if (this.listing || !this.connected || this.abort.signal.aborted) return;
      const inv = this.nextPending();
      if (inv === undefined) return;
      this.pending.delete(inv);
      this.inFlight.add(inv);
      try {
        await this.reread(inv);
        this.stats.rereads++;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        // could not re-read: the view may be stale, so re-list (the stream restarts if that fails too)
        this.log.warn('marathon re-read failed, re-listing', { what: inv, error: errorMessage(err) });
        this.requestRelist(0);
      } finally {
        this.inFlight.delete(inv);
      }
    }
  }

  private async reread(inv: Invalidation): Promise<void> {
    const generation = this.generation;
    const apply = (fn: () => void) => {
      if (generation === this.generation) fn();
      else this.pending.add(inv); // a re-list overtook this read: read again after it
    };
    const colon = inv.indexOf(':');
    const kind = inv.slice(0, colon);
    const id = inv.slice(colon + 1);
    switch (kind) {
      case 'app':
        await this.rereadApp(id, apply);
        return;
      case 'pod':
        await this.rereadPod(id, apply);
        return;
      case 'any':
        if (this.view.get('pod', id)) {
          await this.rereadPod(id, apply);
        } else if (!(await this.rereadApp(id, apply))) {
          await this.rereadPod(id, apply);
        }
        return;
      case 'group':
        await this.rereadGroup(id, apply);
        return;
    }
  }

  /** True if the app exists. */
  private async rereadApp(id: string, apply: (fn: () => void) => void): Promise<boolean> {
    const json = await this.transport.getJson(this.api(`v2/apps${encodeId(id)}?embed=app.tasks`));
    const app = json === undefined ? undefined : this.parseOne(() => parseApp((json as { app?: unknown }).app, '/app'), 'app', id);
    apply(() => this.view.put('app', id, app ? workloadOfApp(app) : undefined));
    return json !== undefined;
  }

  private async rereadPod(id: string, apply: (fn: () => void) => void): Promise<boolean> {
    const json = await this.transport.getJson(this.api(`v2/pods${encodeId(id)}::status`));
    const pod = json === undefined ? undefined : this.parseOne(() => parsePod(json), 'pod', id);
    apply(() => this.view.put('pod', id, pod ? workloadOfPod(pod) : undefined));
    return json !== undefined;
  }

  private async rereadGroup(id: string, apply: (fn: () => void) => void): Promise<void> {
    const embeds = ['group.apps', 'group.apps.tasks', 'group.pods', 'group.groups'].map((e) => `embed=${e}`).join('&');
    const json = await this.transport.getJson(this.api(`v2/groups${encodeId(id)}?${embeds}`));
    const malformed: Malformed[] = [];
    let apps: MarathonApp[] = [];
    let pods: MarathonPod[] = [];
    if (json !== undefined) {
      ({ apps, pods } = flattenGroup(parseGroup(json, malformed)));
      this.reportMalformed(malformed, `group ${id}`);
    }
    apply(() => this.view.replaceGroup(id, [...apps.map(workloadOfApp), ...pods.map(workloadOfPod)]));
  }

  private parseOne<T>(parse: () => T, kind: 'app' | 'pod', id: string): T | undefined {
    try {
      return parse();
    } catch (err) {
      if (!(err instanceof MarathonParseError)) throw err;
      this.reportMalformed([{ kind, id, path: err.path, reason: err.reason }], `${kind} ${id}`);
      return undefined;
    }
  }
}

function encodeId(id: string): string {
  return id
    .split('/')
    .map((s) => encodeURIComponent(s))
    .join('/');
}

function parentOf(id: string): string {
  const i = id.lastIndexOf('/');
  return i <= 0 ? '/' : id.slice(0, i);
}

/** Which apps, pods or groups an event says may have changed. */
export function invalidationsOf(e: MarathonEvent): Invalidation[] {
  switch (e.type) {
    case 'api_post_event': {
      if (e.appId) return [`app:${e.appId}`];
      const id = e.uri?.replace(/^.*?\/v2\/apps/, '');
      return id ? [`group:${parentOf(id.startsWith('/') ? id : `/${id}`)}`] : [];
    }
    case 'pod_created_event':
    case 'pod_updated_event':
    case 'pod_deleted_event':
      return e.podId ? [`pod:${e.podId}`] : [];
    case 'group_change_success':
      return [`group:${e.groupId ?? '/'}`];
    case 'deployment_success':
    case 'deployment_failed':
      return [...e.apps.map((id): Invalidation => `app:${id}`), ...e.pods.map((id): Invalidation => `pod:${id}`)];
    case 'status_update_event':
    case 'app_terminated_event':
    case 'health_status_changed_event':
      return e.appId ? [`any:${e.appId}`] : [];
    case 'instance_changed_event':
      return e.runSpecId ? [`any:${e.runSpecId}`] : [];
  }
}
