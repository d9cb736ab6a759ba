/**
 * Headers across the admission proxy, as RFC 7230 §6.1 and RFC 7239's X-Forwarded-* habit say:
 * hop-by-hop headers (and those a Connection header names) stop at the proxy; every other header
 * passes in its own case, order and number (raw header lists), so Accept, Authorization and
 * Marathon's own headers arrive exactly as sent.
 */
import type { IncomingMessage } from 'node:http';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** `rawHeaders` (name, value, name, value...) without hop-by-hop headers and without `drop` (lowercase names). */
export function endToEndHeaders(rawHeaders: readonly string[], drop: ReadonlySet<string> = new Set()): string[] {
  const named = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1].split(',')) named.add(token.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (HOP_BY_HOP.has(name) || named.has(name) || drop.has(name)) continue;
    out.push(rawHeaders[i], rawHeaders[i + 1]);
  }
  return out;
}

/** Whether a message's Connection header asks to close the connection after it. */
export function wantsClose(msg: IncomingMessage): boolean {
  return /(^|,)\s*close\s*(,|$)/i.test(msg.headers.connection ?? '');
}

// The proxy writes these itself: Host names Marathon, Expect was answered here, forwarding
// headers are appended to, and a body the proxy read goes with its own length.
const REWRITTEN = new Set(['host', 'expect', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto']);
const REWRITTEN_WITH_BODY = new Set([...REWRITTEN, 'content-length']);

/**
 * The headers of a request forwarded to Marathon at `upstreamHost`: the client's end-to-end
 * headers, `Host` of Marathon (so a load balancer in front of it routes by name), and the client
 * appended to X-Forwarded-For. `bodyLength` when the proxy sends a body it read (it may differ from
 * the client's).
 */
export function forwardedRequestHeaders(req: IncomingMessage, upstreamHost: string, bodyLength?: number): string[] {
  const out = endToEndHeaders(req.rawHeaders, bodyLength === undefined ? REWRITTEN : REWRITTEN_WITH_BODY);
  out.push('Host', upstreamHost);
  const prior = req.headers['x-forwarded-for'];
  const client = req.socket.remoteAddress ?? 'unknown';
  out.push('X-Forwarded-For', prior ? `${prior}, ${client}` : client);
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const host = first(req.headers['x-forwarded-host']) ?? req.headers.host;
  if (host) out.push('X-Forwarded-Host', host);
  out.push('X-Forwarded-Proto', first(req.headers['x-forwarded-proto']) ?? 'http');
  if (bodyLength !== undefined) out.push('Content-Length', String(bodyLength));
  // a chunked body is streamed on chunked: Node chunks by default only for some methods
  else if (req.headers['transfer-encoding'] !== undefined && req.headers['content-length'] === undefined) out.push('Transfer-Encoding', 'chunked');
  return out;
}

/** The headers of a lookup the proxy makes for a client (GET, no body), with the client's credentials. */
export function lookupHeaders(req: IncomingMessage, upstreamHost: string): string[] {
  const drop = new Set([...REWRITTEN_WITH_BODY, 'content-type', 'content-encoding', 'accept']);
  const out = endToEndHeaders(req.rawHeaders, drop);
  out.push('Host', upstreamHost, 'Accept', 'application/json');
  const client = req.socket.remoteAddress ?? 'unknown';
  const prior = req.headers['x-forwarded-for'];
  out.push('X-Forwarded-For', prior ? `${prior}, ${client}` : client);
  return out;
}
