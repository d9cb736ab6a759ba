import * as fs from 'node:fs';
import type { Command } from 'commander';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { createLogger } from '../../common/log';
import { DEFAULT_CONTAINER_NETWORK_CIDR, parseCidr } from '../../marathon/sim/ip-pool';
import { ApiError, MarathonSimulator } from '../../marathon/simulator';
import type { RegisterCommand } from './index';

interface SimFlags {
  port: string;
  host: string;
  seed?: string;
  credentials?: string;
  agents?: string;
  standbyOf?: string;
  heartbeatInterval: string;
  rngSeed: string;
  containerNetworkCidr: string;
  healthCheckDelay: string;
}

export const registerMarathonSim: RegisterCommand = (program: Command) => {
  program
    .command('marathon-sim')
    .description('run an in-memory Marathon API simulator (REST + /v2/events) until SIGINT/SIGTERM')
    .option('--port <n>', 'port to listen on (0 picks a free one)', '8080')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--seed <groups.json>', 'load a /v2/groups dump at start')
    .option('--credentials <user:pass>', 'require HTTP basic auth, like Marathon --http_credentials')
    .option('--agents <host,...>', 'agent hostnames tasks are placed on, round-robin', 'agent-1,agent-2,agent-3')
    .option('--standby-of <url>', 'run as a standby of this leader: /v2/events answers 302, everything else is proxied')
    .option('--heartbeat-interval <duration>', 'event stream heartbeat interval', '10s')
    .option('--rng-seed <n>', 'seed for task ids and ports (same seed, same ids)', '1')
    .option('--container-network-cidr <cidr>', 'where containers on container networks get their IPs', DEFAULT_CONTAINER_NETWORK_CIDR)
    .option('--health-check-delay <duration|manual>', "time from a task's start until its first health check passes (apps and pods with health checks); manual: only PUT /_sim/tasks/<id>/health sets it", '1s')
    .action(async (o: SimFlags) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port: "${o.port}" is not a port number`);
      if (o.credentials !== undefined && !o.credentials.includes(':')) throw new UserError('--credentials: write it as user:password');
      if (o.standbyOf !== undefined) {
        try {
          new URL(o.standbyOf);
        } catch {
          throw new UserError(`--standby-of: "${o.standbyOf}" is not a URL; write it like http://127.0.0.1:8080`);
        }
      }
      try {
        parseCidr(o.containerNetworkCidr);
      } catch (err) {
        throw new UserError(`--container-network-cidr: ${(err as Error).message}`);
      }
      const healthCheckDelayMs = o.healthCheckDelay === 'manual' ? null : parseDuration(o.healthCheckDelay, '--health-check-delay');
      const sim = new MarathonSimulator({
        agents: (o.agents ?? '').split(',').map((a) => a.trim()).filter((a) => a.length > 0),
        credentials: o.credentials,
        standbyOf: o.standbyOf,
        heartbeatMs: parseDuration(o.heartbeatInterval, '--heartbeat-interval'),
        seed: Number(o.rngSeed) || 1,
        containerNetworkCidr: o.containerNetworkCidr,
        healthCheckDelayMs,
        logger: createLogger({ format: 'text' }),
      });
      if (o.seed) {
        let dump: unknown;
        try {
          dump = JSON.parse(fs.readFileSync(o.seed, 'utf8'));
        } catch (err) {
          throw new UserError(`--seed: cannot read ${o.seed} as JSON (${(err as Error).message})`);
        }
        try {
          const n = sim.seed(dump);
          process.stderr.write(`marathon-sim: seeded ${n.apps} apps and ${n.pods} pods from ${o.seed}\n`);
        } catch (err) {
          if (err instanceof ApiError) throw new UserError(`--seed: ${o.seed} is not a valid group: ${JSON.stringify(err.body)}`);
          throw err;
        }
      }
      const url = await sim.listen(port, o.host);
      process.stdout.write(`marathon-sim listening on ${url}${o.standbyOf ? ` (standby of ${o.standbyOf})` : ''}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await sim.close();
    });
};
