/**
 * The admission proxy: a reverse proxy in front of Marathon that reads the writes of definitions
 * (admission.ts decides: inject, convert, refuse) and streams everything else through unchanged:
 * status codes, bodies, query strings, credentials, Marathon's redirects, and /v2/events with
 * each chunk written on as it arrives.
 *
 * Redirects are passed as they are: a standby Marathon answers /v2/events with 302 to the
 * leader's own URL, and its clients follow it there (reading events needs no admission); every
 * other request a standby proxies to the leader itself. So point the proxy at any Marathon, a
 * leader or a load balancer, and at the one the Location names the client needs a route to.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import { silentLogger, type Logger } from '../common/log';
import type { AdmissionPolicy, Verdict } from './admission';
import { reviewDefinitionWrite } from './admission';
import { admissionRouteOf, isDefinitionWriteMethod, nonCanonicalWritePath, type AdmissionRoute } from './admission-route';
import { endToEndHeaders, forwardedRequestHeaders, lookupHeaders, wantsClose } from './forwarded-headers';

/** Marathon takes large groups: over five times a real /v2/groups dump of 1,000 apps (1.8 MB, shared/marathon/group-dumps). */
export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface AdmissionProxyOptions {
  /** Marathon's base URL, with any path prefix (`https://dcos/service/marathon`); no credentials: clients send their own */
  marathon: string;
  /** PEM CA bundle trusted for an https Marathon */
  ca?: Buffer;
  policy: AdmissionPolicy;
  /** a definition body longer than this is answered 413 */
  maxBodyBytes?: number;
  /** how many idle keep-alive connections to Marathon are kept */
  maxFreeSockets?: number;
  logger?: Logger;
}

/** Marathon's answer to a lookup the proxy made for a client; relayed to the client as it is. */
class UpstreamAnswer extends Error {
  constructor(readonly status: number, readonly statusMessage: string, readonly headers: string[], readonly body: Buffer) {
    super(`Marathon answered ${status}`);
  }
}

export class AdmissionProxy {
  private readonly upstream: URL;
  /** where requests to Marathon connect: host without IPv6 brackets, port, TLS server name */
  private readonly connectTo: { hostname: string; port?: string; servername?: string };
  private readonly prefix: string;
  private readonly lib: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly maxBody: number;
  private readonly log: Logger;
  private server: http.Server | undefined;
  private listenUrl = '';

  constructor(private readonly opts: AdmissionProxyOptions) {
    const url = new URL(opts.marathon);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Marathon URL ${opts.marathon} must be http:// or https://`);
    if (url.username || url.password) throw new Error('the Marathon URL must not carry credentials: the proxy forwards each client\'s own');
    this.upstream = url;
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    this.connectTo = { hostname, ...(url.port ? { port: url.port } : {}), ...(isIP(hostname) === 0 ? { servername: hostname } : {}) };
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.lib = url.protocol === 'https:' ? https : http;
    const agentOptions = { keepAlive: true, maxFreeSockets: opts.maxFreeSockets ?? 64, scheduling: 'lifo' as const };
    this.agent = url.protocol === 'https:' ? new https.Agent({ ...agentOptions, ...(opts.ca ? { ca: opts.ca } : {}) }) : new http.Agent(agentOptions);
    this.maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.log = opts.logger ?? silentLogger;
  }

  /** `http://host:port` once listening. */
  get url(): string {
    return this.listenUrl;
  }

  listen(port = 8081, host = '127.0.0.1'): Promise<string> {
    const server = http.createServer({ noDelay: true }, (req, res) => this.handle(req, res));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const a = server.address() as AddressInfo;
        this.listenUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
        resolve(this.listenUrl);
      });
    });
  }

  /** Stops listening and closes every connection, client and Marathon side (event streams too). */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.agent.destroy();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    const target = originForm(req.url ?? '/');
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    if (isDefinitionWriteMethod(method)) {
      const problem = nonCanonicalWritePath(path);
      if (problem) return this.answer(res, 400, { message: problem }, true);
      const route = admissionRouteOf(method, path);
      if (route) {
        this.admit(req, res, route, path, q < 0 ? '' : target.slice(q)).catch((err: unknown) => {
          this.log.error('admission failed', { method, path, error: String(err) });
          if (!res.headersSent) this.answer(res, 500, { message: `admission proxy: ${String(err)}` });
          else res.destroy();
        });
        return;
      }
    }
    this.forward(req, res, method, target, req);
  }

  /** Reads a definition write, has it reviewed, and refuses it or forwards what the review says. */
  private async admit(req: http.IncomingMessage, res: http.ServerResponse, route: AdmissionRoute, path: string, search: string): Promise<void> {
    const encoding = req.headers['content-encoding'];
    if (encoding && encoding.trim().toLowerCase() !== 'identity') {
      return this.answer(res, 415, { message: `the admission proxy reads definitions only unencoded (got Content-Encoding: ${encoding}); send the JSON as it is` }, true);
    }
    const body = await readBody(req, this.maxBody);
    if (body === 'aborted') return;
    if (body === 'too large') {
      return this.answer(res, 413, { message: `Request body too large: the admission proxy reads definitions up to ${this.maxBody} bytes` }, true);
    }
    let verdict: Verdict;
    try {
      verdict = await reviewDefinitionWrite(route, body.toString('utf8'), this.opts.policy, (id) => this.appExists(req, id));
    } catch (err) {
      if (!(err instanceof UpstreamAnswer)) throw err;
      res.writeHead(err.status, err.statusMessage, err.headers);
      res.end(err.body);
      return;
    }
    const what = { method: route.method, path };
    if (verdict.kind === 'refuse') {
      this.log.info('refused', { ...what, status: verdict.refusal.status, refusal: verdict.refusal.body });
      return this.answer(res, verdict.refusal.status, verdict.refusal.body);
    }
    if (verdict.injected.length || verdict.keptApps.length) {
      this.log.info('admitted', { ...what, injected: verdict.injected, converted: verdict.converted, keptAsApps: verdict.keptApps, ...(verdict.rewrite ? { sentAs: `${verdict.rewrite.method} ${verdict.rewrite.path}` } : {}) });
    }
    const method = verdict.rewrite?.method ?? route.method;
    const target = (verdict.rewrite?.path ?? path) + search;
    this.forward(req, res, method, target, verdict.body === undefined ? body : Buffer.from(verdict.body, 'utf8'));
  }

  /**
   * Sends the request to Marathon (its body streamed from the client, or the bytes given) and
   * streams the answer back. A request with no body to stream is sent again, once, when a kept-alive
   * connection turns out to have been closed by Marathon just before (Node's advice for pooled sockets).
   */
  private forward(req: http.IncomingMessage, res: http.ServerResponse, method: string, target: string, body: http.IncomingMessage | Buffer, retried = false): void {
    const events = /^\/v2\/events\/?(\?|$)/.test(target);
    const streamed = !Buffer.isBuffer(body) && hasBody(body);
    const headers = forwardedRequestHeaders(req, this.upstream.host, Buffer.isBuffer(body) ? body.length : undefined);
    const up = this.lib.request({
      protocol: this.upstream.protocol,
      ...this.connectTo,
      method,
      path: this.prefix + target,
      headers,
      setHost: false,
      // an event stream lives long: a connection of its own, not one of the pool's
      agent: events ? false : this.agent,
      ...(events && this.opts.ca ? { ca: this.opts.ca } : {}),
    });
    if (events) up.setNoDelay(true);
    up.on('response', (upRes) => this.relay(upRes, res, events, method, target));
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (!retried && !streamed && up.reusedSocket && err.code === 'ECONNRESET' && !res.destroyed) {
        this.forward(req, res, method, target, body, true);
        return;
      }
      this.log.warn('Marathon unreachable', { method, target, error: err.message });
      this.answer(res, 502, { message: `The admission proxy could not reach Marathon at ${this.upstream.origin}${this.prefix}: ${err.code ?? err.message}` });
    });
    // the client gone (an event subscriber disconnecting, a write cancelled): so is the request to Marathon
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    if (Buffer.isBuffer(body)) up.end(body);
    else if (streamed) pipeline(body, up, () => {});
    else {
      body.resume();
      up.end();
    }
  }

  private relay(upRes: http.IncomingMessage, res: http.ServerResponse, events: boolean, method: string, target: string): void {
    this.log.debug('forwarded', { method, target, status: upRes.statusCode });
    const headers = endToEndHeaders(upRes.rawHeaders);
    if (wantsClose(upRes)) headers.push('Connection', 'close');
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers);
    if (events || /^text\/event-stream/i.test(upRes.headers['content-type'] ?? '')) {
      // the subscriber sees the stream open (and each event) the moment Marathon sends it
      res.socket?.setNoDelay(true);
      res.flushHeaders();
    }
    // an aborted answer (Marathon closing an event stream) aborts the client's too, as Marathon's own would
    pipeline(upRes, res, (err) => {
      if (err) res.destroy();
    });
  }

  /** GET /v2/apps/<id> with the client's credentials: 200 yes, 404 no, anything else is the client's answer. */
  private appExists(req: http.IncomingMessage, id: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const up = this.lib.request({
        protocol: this.upstream.protocol,
        ...this.connectTo,
        method: 'GET',
        path: `${this.prefix}/v2/apps${id}`,
        headers: lookupHeaders(req, this.upstream.host),
        setHost: false,
        agent: this.agent,
      }, (upRes) => {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('error', reject);
        upRes.on('end', () => {
          const status = upRes.statusCode ?? 502;
          if (status === 200) resolve(true);
          else if (status === 404) resolve(false);
          else reject(new UpstreamAnswer(status, upRes.statusMessage ?? '', endToEndHeaders(upRes.rawHeaders), Buffer.concat(chunks)));
        });
      });
      up.on('error', (err) => {
        const body = Buffer.from(JSON.stringify({ message: `The admission proxy could not reach Marathon at ${this.upstream.origin}${this.prefix}: ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
        reject(new UpstreamAnswer(502, 'Bad Gateway', ['Content-Type', 'application/json', 'Content-Length', String(body.length)], body));
      });
      up.end();
    });
  }

  /** An answer of the proxy's own, in Marathon's JSON error format; `close` when the request's body was not (all) read. */
  private answer(res: http.ServerResponse, status: number, body: unknown, close = false): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...(close ? { Connection: 'close' } : {}) });
    res.end(text);
  }
}

/** The request target as a path and query: an absolute-form target (`http://host/v2/apps`) loses its scheme and host. */
function originForm(target: string): string {
  if (target.startsWith('/')) return target;
  try {
    const u = new URL(target);
    return u.pathname + u.search;
  } catch {
    return target;
  }
}

/** Whether a request carries a body (RFC 7230 §3.3.3: a Transfer-Encoding, or a Content-Length above 0). */
function hasBody(req: http.IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** The whole body, unless it is longer than `max` or the client goes away first. */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | 'too large' | 'aborted'> {
  if (Number(req.headers['content-length']) > max) return Promise.resolve('too large');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = (v: Buffer | 'too large' | 'aborted') => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('close', onClose);
      resolve(v);
    };
    const onData = (c: Buffer) => {
      length += c.length;
      if (length > max) {
        req.pause();
        done('too large');
      } else chunks.push(c);
    };
    const onEnd = () => done(Buffer.concat(chunks, length));
    const onAbort = () => done('aborted');
    const onClose = () => {
      if (!req.complete) done('aborted');
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onClose);
  });
}
