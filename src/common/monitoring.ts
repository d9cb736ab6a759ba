import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { Logger } from './log';

/** One readiness condition: a name and a check that says why it is not ready, or undefined. */
export interface ReadinessCheck {
  name: string;
  check(): string | undefined;
}

export interface MonitoringServer {
  port: number;
  registry: Registry;
  /** Adds a condition to /healthz. */
  addReadinessCheck(check: ReadinessCheck): void;
  /** Serves JSON at `path` (e.g. /debug/syncz); the handler gets the query. */
  addJsonRoute(path: string, handler: (query: URLSearchParams) => unknown | Promise<unknown>): void;
  close(): Promise<void>;
}

export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

const PATHS = ['/metrics', '/healthz', '/ready', '/livez', '/version'];

/**
 * A monitoring port (the server's 15014 as Citadel's, the agent's 15020 as the Istio agent's status
 * port): `/metrics` (Prometheus), `/healthz` and `/ready` (200 only when every readiness check
 * passes, else 503 with the reasons), `/livez` (200 while the process answers: what a scheduler
 * should restart on, since a replica that waits for ZooKeeper must not be killed for it),
 * `/version`, and JSON debug routes.
 */
export async function startMonitoring(opts: { port: number; host?: string; registry: Registry; version: string; logger: Logger }): Promise<MonitoringServer> {
  const checks: ReadinessCheck[] = [];
  const routes = new Map<string, (query: URLSearchParams) => unknown | Promise<unknown>>();
  const server = http.createServer(async (req, res) => {
    const [url, query = ''] = (req.url ?? '/').split('?');
    try {
      const route = routes.get(url);
      if (route) {
        const body = await route(new URLSearchParams(query));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body) + '\n');
        return;
      }
      if (url === '/metrics') {
        res.writeHead(200, { 'content-type': opts.registry.contentType });
        res.end(await opts.registry.metrics());
      } else if (url === '/healthz' || url === '/ready') {
        const failing = checks.map((c) => ({ name: c.name, why: c.check() })).filter((c) => c.why !== undefined);
        res.writeHead(failing.length ? 503 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ready: failing.length === 0, failing }) + '\n');
      } else if (url === '/livez') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ alive: true, uptimeSeconds: Math.round(process.uptime()) }) + '\n');
      } else if (url === '/version') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ name: 'marathon-citadel', version: opts.version, node: process.version }) + '\n');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end(`not found: try ${[...PATHS, ...routes.keys()].join(', ')}\n`);
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${(err as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  opts.logger.info('monitoring listening', { port, paths: [...PATHS, ...routes.keys()] });
  return {
    port,
    registry: opts.registry,
    addReadinessCheck: (c) => checks.push(c),
    addJsonRoute: (path, handler) => routes.set(path, handler),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
