/**
 * A Marathon API simulator faithful to shared/marathon/API-NOTES.md: the REST endpoints with
 * Marathon's status codes and error bodies, the /v2/events bus (CRLF framing, heartbeats,
 * filters), health check results and events, basic auth, and a standby mode that redirects the
 * event stream to the leader and proxies everything else. In memory, deterministic for a given
 * seed. Beyond Marathon's API it serves one of its own, for tests, under `/_sim/`:
 * `PUT /_sim/tasks/<task or instance id>/health` with `{"alive": false}` sets a task's health.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger } from '../common/log';
import { ApiError, isObj, resolveId, type Json, type Obj } from './sim/definitions';
import { MarathonState } from './sim/state';
import { formatSseEvent } from './sse';

export { MarathonState } from './sim/state';
export { ApiError } from './sim/definitions';

export interface MarathonSimulatorOptions {
  /** agent hostnames tasks are placed on, round-robin (default agent-1..agent-3) */
  agents?: string[];
  /** `user:pass`: every request then needs HTTP basic auth, like --http_credentials */
  credentials?: string;
  /** DC/OS style: also (or only) accept `Authorization: token=<this>` */
  token?: string;
  /** heartbeat interval on /v2/events in ms (default 10 000) */
  heartbeatMs?: number;
  /** RNG seed for uuids and ports (default 1) */
  seed?: number;
  /** run as a standby of this leader URL */
  standbyOf?: string;
  /** a subscriber further behind than this many events is disconnected (Marathon: 1024) */
  maxEventBacklog?: number;
  logger?: Logger;
  version?: string;
  /** where containers on `container` networks get their IPs (default 9.0.0.0/8, like DC/OS's overlay) */
  containerNetworkCidr?: string;
  /** ms from a task's start until its first health check passes (default 1000); null: only PUT /_sim/tasks/<id>/health decides */
  healthCheckDelayMs?: number | null;
}

interface Subscriber {
  res: http.ServerResponse;
  types?: Set<string>;
  backlog: number;
}

const JSON_TYPE = 'application/json; qos=0.9';

export class MarathonSimulator {
  readonly state: MarathonState;
  private server: http.Server | undefined;
  private readonly subscribers = new Set<Subscriber>();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly authHeader: string | undefined;
  private leaderUrl = '';
  /** events written (all subscribers), for tests */
  eventsSent = 0;

  constructor(private readonly opts: MarathonSimulatorOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    this.state = new MarathonState({
      agents: opts.agents,
      seed: opts.seed,
      emit: (type, payload) => this.publish(type, payload),
      containerNetworkCidr: opts.containerNetworkCidr,
      healthCheckDelayMs: opts.healthCheckDelayMs,
    });
    this.authHeader = opts.credentials ? `Basic ${Buffer.from(opts.credentials).toString('base64')}` : undefined;
  }

  /** The base URL (`http://127.0.0.1:PORT`) once listening. */
  get url(): string {
    return this.leaderUrl;
  }

  /** Loads a `/v2/groups` dump (no events). */
  seed(dump: Json): { apps: number; pods: number } {
    return this.state.seed(dump);
  }

  /** Starts serving; port 0 picks a free one. Can be called again after close() (a restart keeping state). */
  listen(port = 0, host = '127.0.0.1'): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        this.log.error('marathon-sim request failed', { error: String(err) });
        if (!res.headersSent) this.send(res, 500, { message: String(err) });
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const addr = server.address() as AddressInfo;
        const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
        this.leaderUrl = `http://${h}:${addr.port}`;
        const interval = this.opts.heartbeatMs ?? 10_000;
        this.heartbeat = setInterval(() => this.beat(), interval);
        this.heartbeat.unref();
        resolve(this.leaderUrl);
      });
    });
  }

  /** Stops like a Marathon process exiting: every event stream and connection is closed. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    this.dropEventStreams();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Closes every open /v2/events stream (the server keeps running). */
  dropEventStreams(): void {
    for (const s of this.subscribers) s.res.destroy();
    this.subscribers.clear();
  }

  subscriberCount(): number {
    return this.subscribers.size;
  }

  // --- events --------------------------------------------------------------------------------

  private publish(type: string, payload: () => Obj): void {
    if (this.subscribers.size === 0) return;
    let frame: string | undefined;
    for (const s of this.subscribers) {
      if (s.types && !s.types.has(type)) continue;
      frame ??= formatSseEvent(type, JSON.stringify({ ...payload(), eventType: type, timestamp: new Date().toISOString() }));
      this.write(s, frame);
    }
  }

  private write(s: Subscriber, frame: string): void {
    this.eventsSent++;
    if (!s.res.write(frame)) {
      s.backlog++;
      if (s.backlog > (this.opts.maxEventBacklog ?? 1024)) {
        this.log.warn('marathon-sim: event subscriber too far behind, disconnecting');
        this.subscribers.delete(s);
        s.res.destroy();
      }
    }
  }

  private beat(): void {
    for (const s of this.subscribers) s.res.write('\r\n');
  }

  private events(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    if (req.headers.accept !== 'text/event-stream') {
      this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
      return;
    }
    const types = url.searchParams.getAll('event_type');
    res.writeHead(200, {
      'Content-Type': 'text/event-stream;charset=utf-8',
      Connection: 'close',
      'Cache-Control': 'no-cache, no-store, must-revalidate',
      'X-Marathon-Leader': this.leaderUrl,
    });
    res.flushHeaders(); // the stream is open before its first event, also when a filter holds event_stream_attached back
    const sub: Subscriber = { res, backlog: 0, ...(types.length ? { types: new Set(types) } : {}) };
    res.on('drain', () => (sub.backlog = 0));
    res.on('close', () => this.subscribers.delete(sub));
    this.subscribers.add(sub);
    if (!sub.types || sub.types.has('event_stream_attached')) {
      this.write(sub, formatSseEvent('event_stream_attached', JSON.stringify({ remoteAddress: req.socket.remoteAddress, eventType: 'event_stream_attached', timestamp: new Date().toISOString() })));
    }
  }

  // --- HTTP ----------------------------------------------------------------------------------

  private send(res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
    this.sendText(res, status, body === undefined ? undefined : JSON.stringify(body), headers);
  }

  private sendText(res: http.ServerResponse, status: number, text: string | undefined, headers: Record<string, string> = {}): void {
    const body = text;
    text ??= '';
    res.writeHead(status, {
      ...(this.opts.standbyOf ? {} : { 'X-Marathon-Leader': this.leaderUrl }),
      ...(body === undefined ? {} : { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text) }),
      ...headers,
    });
    res.end(text);
  }

  private async readBody(req: http.IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  private async jsonBody(req: http.IncomingMessage): Promise<Json> {
    const text = await this.readBody(req);
    if (text.trim().length === 0) throw new ApiError(400, { message: 'Please specify data in JSON format', details: 'Request entity expected but not supplied' });
    try {
      return JSON.parse(text) as Json;
    } catch (err) {
      throw new ApiError(400, { message: 'Invalid JSON', details: (err as Error).message });
    }
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const auth = req.headers.authorization;
    const needsAuth = this.authHeader !== undefined || this.opts.token !== undefined;
    if (needsAuth && !(auth !== undefined && (auth === this.authHeader || auth === `token=${this.opts.token}`))) {
      await this.readBody(req);
      this.send(res, 401, { message: 'Invalid username or password.' }, { 'WWW-Authenticate': 'basic realm="Mesosphere"' });
      return;
    }
    if (this.opts.standbyOf) return this.standby(req, res, url);
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const origin = { clientIp: req.socket.remoteAddress ?? '127.0.0.1', uri: path };
    try {
      if (path === '/ping') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Marathon-Leader': this.leaderUrl });
        res.end('pong');
        return;
      }
      if (path === '/v2/events') return this.events(req, res, url);
      if (path === '/v2/info') return this.send(res, 200, this.info());
      if (path === '/v2/leader') return this.send(res, 200, { leader: this.leaderUrl.replace(/^https?:\/\//, '') });
      if (path === '/v2/deployments' || path === '/v2/deployments/') return this.send(res, 200, []);
      if (path === '/v2/tasks' || path === '/v2/tasks/') return this.tasks(res, url);
      if (path === '/v2/apps' || path === '/v2/apps/' || path.startsWith('/v2/apps/')) return await this.appsRoute(req, res, url, method, origin);
      if (path === '/v2/pods' || path === '/v2/pods/' || path.startsWith('/v2/pods/')) return await this.podsRoute(req, res, url, method, origin);
      if (path === '/v2/groups' || path === '/v2/groups/' || path.startsWith('/v2/groups/')) return await this.groupsRoute(req, res, url, method);
      if (path.startsWith('/_sim/')) return await this.simRoute(req, res, path, method);
      this.send(res, 404, { message: `HTTP 404 Not Found` });
    } catch (err) {
      if (err instanceof ApiError) this.send(res, err.status, err.body, err.headers);
      else throw err;
    }
  }

  private info(): Obj {
    const leader = this.leaderUrl.replace(/^https?:\/\//, '');
    return {
      name: 'marathon',
      version: this.opts.version ?? '1.10.17',
      buildref: 'marathon-citadel-simulator',
      elected: true,
      leader,
      frameworkId: this.state.agents[0]?.agentId.replace(/-S\d+$/, '-0000'),
      marathon_config: { hostname: leader.split(':')[0], ha: true, http_credentials: this.opts.credentials ? '***' : undefined, default_network_name: 'container-network', local_port_min: 10000, local_port_max: 20000, mesos_role: '*', mesos_user: 'nobody' },
      zookeeper_config: { zk: 'zk://localhost:2181/marathon' },
      http_config: { http_port: Number(leader.split(':')[1]), https_port: 8443 },
    };
  }

  private tasks(res: http.ServerResponse, url: URL): void {
    const status = url.searchParams.get('status');
    const want = status === 'running' ? 'TASK_RUNNING' : status === 'staging' ? 'TASK_STAGING' : undefined;
    const tasks: Obj[] = [];
    for (const rec of this.state.apps.values()) for (const t of rec.tasks) if (!want || t.state === want) tasks.push(this.state.taskJson(t));
    this.send(res, 200, { tasks });
  }

  private appEmbeds(url: URL): { tasks: boolean; lastTaskFailure: boolean } {
    const embeds = url.searchParams.getAll('embed').map((e) => e.replace(/^(group\.apps\.|apps\.|app\.)/, ''));
    return { tasks: embeds.includes('tasks'), lastTaskFailure: embeds.includes('lastTaskFailure') };
  }

  private async appsRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL, method: string, origin: { clientIp: string; uri: string }): Promise<void> {
    const rest = url.pathname.replace(/^\/v2\/apps\/?/, '');
    const force = url.searchParams.get('force') === 'true';
    if (rest === '') {
      if (method === 'GET') {
        const embed = this.appEmbeds(url);
        const idFilter = url.searchParams.get('id')?.toLowerCase();
        const cmdFilter = url.searchParams.get('cmd');
        const selector = url.searchParams.get('label');
        const match = selector ? labelSelector(selector) : undefined;
        const apps: string[] = [];
        for (const rec of this.state.apps.values()) {
          if (idFilter && !(rec.def.id as string).toLowerCase().includes(idFilter)) continue;
          if (cmdFilter && !(typeof rec.def.cmd === 'string' && rec.def.cmd.includes(cmdFilter))) continue;
          if (match && !match(rec.def.labels as Record<string, string>)) continue;
          apps.push(this.state.appInfoJson(rec, embed));
        }
        return this.sendText(res, 200, `{"apps":[${apps.join(',')}]}`);
      }
      if (method === 'POST') {
        const { app, deploymentId } = this.state.createApp(await this.jsonBody(req), origin);
        return this.send(res, 201, app, { Location: `${this.leaderUrl}/v2/apps${String(app.id)}`, 'Marathon-Deployment-Id': deploymentId });
      }
      if (method === 'PUT' || method === 'PATCH') {
        const body = await this.jsonBody(req);
        if (!Array.isArray(body)) throw new ApiError(422, { message: 'Invalid JSON', details: [{ path: '', errors: ['error.expected.jsarray'] }] });
        const ids: string[] = [];
        let version = '';
        for (const [i, a] of body.entries()) {
          if (!isObj(a) || typeof a.id !== 'string') throw new ApiError(422, { message: 'Object is not valid', details: [{ path: `(${i})/id`, errors: ['error.path.missing'] }] });
          const r = this.state.putApp(resolveId(a.id), a, { ...origin, partial: method === 'PATCH' || url.searchParams.get('partialUpdate') !== 'false' });
          ids.push(r.deploymentId);
          version = r.version;
        }
        return this.send(res, 200, { version, deploymentId: ids[0] ?? '' });
      }
      return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
    }
    // /v2/apps/{id}[/tasks[/{taskId}] | /restart | /*]
    const m = /^(.*?)(?:\/(tasks)(?:\/([^/]+))?|\/(restart)|\/(\*))?$/.exec(rest)!;
    const id = resolveId(m[1]);
    if (m[5]) {
      if (method !== 'GET') return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
      const prefix = id === '/' ? '/' : `${id}/`;
      const apps = [...this.state.apps.values()].filter((r) => (r.def.id as string).startsWith(prefix)).map((r) => this.state.appInfo(r, { tasks: true, lastTaskFailure: true }));
      return this.send(res, 200, { '*': apps });
    }
    if (m[2]) {
      const rec = this.state.app(id);
      if (m[3] !== undefined) {
        if (method !== 'DELETE') return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
        const task = this.state.killTask(id, decodeURIComponent(m[3]), url.searchParams.get('scale') === 'true');
        return this.send(res, 200, { task: this.state.taskJson(task) });
      }
      if (method === 'GET') return this.send(res, 200, { tasks: rec.tasks.map((t) => this.state.taskJson(t)) });
      if (method === 'DELETE') {
        const killed = [...rec.tasks];
        for (const t of killed) this.state.killTask(id, t.id, url.searchParams.get('scale') === 'true');
        return this.send(res, 200, { tasks: killed.map((t) => this.state.taskJson(t)) });
      }
      return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
    }
    if (m[4]) {
      if (method !== 'POST') return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
      return this.send(res, 200, this.state.restartApp(id));
    }
    switch (method) {
      case 'GET':
        return this.send(res, 200, { app: this.state.appInfo(this.state.app(id), { tasks: true, lastTaskFailure: true }) });
      case 'PUT':
      case 'PATCH': {
        const r = this.state.putApp(id, await this.jsonBody(req), { ...origin, partial: method === 'PATCH' || url.searchParams.get('partialUpdate') !== 'false' });
        return this.send(res, r.created ? 201 : 200, { version: r.version, deploymentId: r.deploymentId }, { 'Marathon-Deployment-Id': r.deploymentId });
      }
      case 'DELETE': {
        void force; // deployments finish at once: nothing is ever locked
        const r = this.state.deleteApp(id);
        return this.send(res, 200, r, { 'Marathon-Deployment-Id': r.deploymentId });
      }
    }
    this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
  }

  private async podsRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL, method: string, origin: { clientIp: string; uri: string }): Promise<void> {
    const rest = url.pathname.replace(/^\/v2\/pods\/?/, '');
    if (rest === '::status') {
      return this.send(res, 200, [...this.state.pods.values()].map((p) => this.state.podStatus(p)));
    }
    if (rest === '') {
      if (method === 'GET') return this.send(res, 200, [...this.state.pods.values()].map((p) => p.def));
      if (method === 'POST') {
        const pod = this.state.createPod(await this.jsonBody(req), { ...origin, uri: url.pathname });
        return this.send(res, 201, pod, { Location: `${this.leaderUrl}/v2/pods${String(pod.id)}` });
      }
      return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
    }
    const m = /^(.*?)(?:::(status|instances)(?:\/(.+))?)?$/.exec(rest)!;
    const id = resolveId(m[1]);
    if (m[2] === 'status') {
      if (method !== 'GET') return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
      return this.send(res, 200, this.state.podStatus(this.state.pod(id)));
    }
    if (m[2] === 'instances') {
      if (method !== 'DELETE' || !m[3]) return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
      return this.send(res, 200, this.state.killPodInstance(id, decodeURIComponent(m[3])));
    }
    switch (method) {
      case 'GET':
        return this.send(res, 200, this.state.pod(id).def);
      case 'PUT': {
        const r = this.state.putPod(id, await this.jsonBody(req), { ...origin, uri: url.pathname });
        return this.send(res, r.created ? 201 : 200, r.pod, { 'Marathon-Deployment-Id': r.deploymentId });
      }
      case 'DELETE': {
        const deploymentId = this.state.deletePod(id, { ...origin, uri: url.pathname });
        res.writeHead(202, { 'X-Marathon-Leader': this.leaderUrl, 'Marathon-Deployment-Id': deploymentId });
        res.end();
        return;
      }
    }
    this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
  }

  private async groupsRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL, method: string): Promise<void> {
    const id = resolveId(url.pathname.replace(/^\/v2\/groups\/?/, ''));
    const dryRun = url.searchParams.get('dryRun') === 'true';
    switch (method) {
      case 'GET': {
        const given = url.searchParams.getAll('embed');
        // any embed replaces the defaults (group.apps, group.pods, group.groups)
        const embeds = new Set(given.length ? given : ['group.apps', 'group.pods', 'group.groups']);
        return this.send(res, 200, this.state.groupJson(id, {
          apps: embeds.has('group.apps'),
          pods: embeds.has('group.pods'),
          groups: embeds.has('group.groups'),
          tasks: embeds.has('group.apps.tasks'),
          counts: embeds.has('group.apps.counts') || embeds.has('group.apps.tasks'),
        }));
      }
      case 'POST': {
        const body = await this.jsonBody(req);
        const base = id;
        const gid = isObj(body) && typeof body.id === 'string' ? resolveId(body.id, base) : base;
        const r = this.state.updateGroup(gid, isObj(body) ? { ...body, id: gid } : body, { create: true });
        return this.send(res, 201, { version: r.version, deploymentId: r.deploymentId }, { Location: `${this.leaderUrl}/v2/groups${gid}`, 'Marathon-Deployment-Id': r.deploymentId });
      }
      case 'PUT': {
        const r = this.state.updateGroup(id, await this.jsonBody(req), { dryRun });
        if (dryRun) return this.send(res, 200, { steps: r.steps.length ? [{ actions: r.steps }] : [] });
        return this.send(res, 200, { version: r.version, deploymentId: r.deploymentId }, { 'Marathon-Deployment-Id': r.deploymentId });
      }
      case 'DELETE': {
        const r = this.state.deleteGroup(id);
        return this.send(res, 200, r, { 'Marathon-Deployment-Id': r.deploymentId });
      }
    }
    this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
  }

  // --- the simulator's own API (not Marathon's) ----------------------------------------------

  /** `PUT /_sim/tasks/<id>/health` `{"alive": bool}`: sets a task's (or pod instance's) health; answers with the task (pod instance) as Marathon shows it. */
  private async simRoute(req: http.IncomingMessage, res: http.ServerResponse, path: string, method: string): Promise<void> {
    const m = /^\/_sim\/tasks\/([^/]+)\/health$/.exec(path);
    if (!m) return this.send(res, 404, { message: 'HTTP 404 Not Found' });
    if (method !== 'PUT') return this.send(res, 405, { message: 'HTTP 405 Method Not Allowed' });
    const body = await this.jsonBody(req);
    if (!isObj(body) || typeof body.alive !== 'boolean') {
      throw new ApiError(422, { message: 'Object is not valid', details: [{ path: '/alive', errors: ['error.expected.jsboolean'] }] });
    }
    const cause = typeof body.cause === 'string' ? body.cause : undefined;
    return this.send(res, 200, this.state.setHealth(decodeURIComponent(m[1]), body.alive, cause));
  }

  // --- standby -------------------------------------------------------------------------------

  private async standby(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const leader = new URL(this.opts.standbyOf!);
    if (url.pathname === '/v2/events') {
      const location = new URL(url.pathname + url.search, leader);
      res.writeHead(302, { Location: location.href, 'Content-Length': 0 });
      res.end();
      return;
    }
    const body = await this.readBody(req);
    const headers = { ...req.headers, host: leader.host, 'x-marathon-via': `1.1 ${this.leaderUrl.replace(/^https?:\/\//, '')}` };
    delete headers['content-length'];
    const target = new URL(url.pathname + url.search, leader);
    await new Promise<void>((resolve) => {
      const up = http.request(target, { method: req.method, headers: { ...headers, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) } }, (upRes) => {
        const out: http.OutgoingHttpHeaders = { ...upRes.headers, 'x-marathon-via': headers['x-marathon-via'] };
        res.writeHead(upRes.statusCode ?? 502, out);
        upRes.pipe(res);
        upRes.on('end', resolve);
        upRes.on('error', resolve);
      });
      up.on('error', () => {
        if (!res.headersSent) this.send(res, 502, { message: `Could not reach the leading Marathon at ${leader.host}` });
        resolve();
      });
      up.end(body);
    });
  }
}

/** Marathon's label selector: `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`; comma = AND. */
export function labelSelector(selector: string): (labels: Record<string, string>) => boolean {
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) terms.push(cur.trim());
  const preds = terms.map((t): ((l: Record<string, string>) => boolean) => {
    let m = /^(.+?)\s*(==|!=)\s*(.*)$/.exec(t);
    if (m) {
      const [, k, op, v] = m;
      return op === '==' ? (l) => l[k] === v : (l) => l[k] !== v;
    }
    m = /^(.+?)\s+(in|notin)\s*\((.*)\)$/.exec(t);
    if (m) {
      const [, k, op, list] = m;
      const vals = new Set(list.split(',').map((x) => x.trim()));
      return op === 'in' ? (l) => k in l && vals.has(l[k]) : (l) => !(k in l) || !vals.has(l[k]);
    }
    if (/^[^=!()\s]+$/.test(t)) return (l) => t in l;
    throw new ApiError(400, { message: `Can not parse label selector ${selector}` });
  });
  return (labels) => preds.every((p) => p(labels ?? {}));
}
