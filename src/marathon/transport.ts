/** HTTP to Marathon over node:http/https: authentication, CA trust, keep-alive, timeouts. */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

export interface TransportOptions {
  username?: string;
  password?: string;
  /** DC/OS: a file holding the token sent as `Authorization: token=<JWT>`, re-read when it changes */
  tokenFile?: string;
  /** PEM bundle trusted for https Marathon URLs */
  caFile?: string;
  requestTimeoutMs?: number;
}

export interface MarathonResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Where a request's time went: Marathon until the response head, then its body, then JSON.parse. */
export interface RequestTiming {
  answerMs: number;
  bodyMs: number;
  parseMs: number;
  bytes: number;
}

export class MarathonHttpError extends Error {
  constructor(readonly status: number, readonly url: string, readonly body: string) {
    super(`${url}: HTTP ${status}${body ? ` ${summary(body)}` : ''}`);
    this.name = 'MarathonHttpError';
  }
}

function summary(body: string): string {
  try {
    const j = JSON.parse(body) as { message?: unknown };
    if (typeof j.message === 'string') return j.message;
  } catch {
    // not JSON
  }
  return body.length > 200 ? `${body.slice(0, 200)}...` : body;
}

export class MarathonTransport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly httpsAgent: https.Agent;
  private token?: { value: string; mtimeMs: number; checkedAt: number };

  constructor(private readonly opts: TransportOptions = {}) {
    const ca = opts.caFile ? fs.readFileSync(opts.caFile) : undefined;
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 32, ...(ca ? { ca } : {}) });
  }

  /** The URL without credentials, and the headers that authenticate a request to it. */
  prepare(url: URL, accept: string): { url: URL; headers: Record<string, string> } {
    const headers: Record<string, string> = { Accept: accept };
    const clean = new URL(url.href);
    if (clean.username || clean.password) {
      const user = decodeURIComponent(clean.username);
      const pass = decodeURIComponent(clean.password);
      headers.Authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
      clean.username = '';
      clean.password = '';
    } else if (this.opts.username !== undefined) {
      headers.Authorization = `Basic ${Buffer.from(`${this.opts.username}:${this.opts.password ?? ''}`).toString('base64')}`;
    } else if (this.opts.tokenFile) {
      headers.Authorization = `token=${this.readToken()}`;
    }
    return { url: clean, headers };
  }

  private readToken(): string {
    const now = Date.now();
    const file = this.opts.tokenFile!;
    if (this.token && now - this.token.checkedAt < 1000) return this.token.value;
    const mtimeMs = fs.statSync(file).mtimeMs;
    if (!this.token || this.token.mtimeMs !== mtimeMs) {
      this.token = { value: fs.readFileSync(file, 'utf8').trim(), mtimeMs, checkedAt: now };
    } else {
      this.token.checkedAt = now;
    }
    return this.token.value;
  }

  /** Opens a request and resolves with the response head; the caller reads (or drops) the body. */
  open(url: URL, opts: { method?: string; accept: string; keepAlive?: boolean; signal?: AbortSignal }): Promise<http.IncomingMessage> {
    const { url: target, headers } = this.prepare(url, opts.accept);
    const isHttps = target.protocol === 'https:';
    const lib = isHttps ? https : http;
    // the event stream gets a connection of its own (agent: false); REST calls share keep-alive sockets
    const agent = opts.keepAlive === false ? false : isHttps ? this.httpsAgent : this.httpAgent;
    const ca = isHttps ? this.httpsAgent.options.ca : undefined;
    return new Promise((resolve, reject) => {
      const req = lib.request(target, { method: opts.method ?? 'GET', headers, agent, signal: opts.signal, ...(ca ? { ca } : {}) }, resolve);
      req.on('error', reject);
      req.end();
    });
  }

  /** A whole request; rejects on network errors and timeouts, resolves with any status. */
  async request(url: URL, accept = 'application/json', timing?: RequestTiming): Promise<MarathonResponse> {
    const signal = AbortSignal.timeout(this.opts.requestTimeoutMs ?? 30_000);
    const t0 = performance.now();
    const res = await this.open(url, { accept, signal });
    const t1 = performance.now();
    // Decoded as it arrives: collecting Buffers and concatenating them held the body three times
    // over (chunks, the whole Buffer, the string) at the peak of an 18 MB list.
    res.setEncoding('utf8');
    let body = '';
    let bytes = 0;
    for await (const chunk of res) {
      body += chunk as string;
      if (timing) bytes += Buffer.byteLength(chunk as string);
    }
    if (timing) {
      timing.answerMs = t1 - t0;
      timing.bodyMs = performance.now() - t1;
      timing.bytes = bytes;
    }
    return { status: res.statusCode ?? 0, headers: res.headers, body };
  }

  /** GET a JSON document; undefined on 404, MarathonHttpError on any other non-2xx. */
  async getJson(url: URL, timing?: RequestTiming): Promise<unknown | undefined> {
    const res = await this.request(url, 'application/json', timing);
    if (res.status === 404) return undefined;
    if (res.status < 200 || res.status >= 300) throw new MarathonHttpError(res.status, stripCredentials(url), res.body);
    const t0 = performance.now();
    try {
      return JSON.parse(res.body) as unknown;
    } catch (err) {
      throw new MarathonHttpError(res.status, stripCredentials(url), `invalid JSON: ${(err as Error).message}`);
    } finally {
      if (timing) timing.parseMs = performance.now() - t0;
    }
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** A URL fit for logs. */
export function stripCredentials(url: URL | string): string {
  const u = new URL(typeof url === 'string' ? url : url.href);
  u.username = '';
  u.password = '';
  return u.href;
}
