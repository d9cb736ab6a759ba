import { isIP } from 'node:net';

/** A TCP address as `host:port` (IPv6 literals in brackets: `[::1]:15012`). */
export interface HostPort {
  host: string;
  port: number;
}

const HOSTNAME = /^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/;

/** Parses `host:port`; the error names `what` (a flag or field) and says what is expected. */
export function parseHostPort(text: string, what: string): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`${what}: "${text}" is not host:port (e.g. citadel.marathon.mesos:15012)`);
  const host = m[1];
  if (isIP(host) === 0 && !HOSTNAME.test(host)) throw new Error(`${what}: "${host}" is neither an IP address nor a hostname`);
  return { host, port };
}

export function formatHostPort(a: HostPort): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
