import { Command } from 'commander';
import { UserError } from '../../common/errors';
import type { ProxyStatus } from '../../server/xds-server';
import { addOutputOption, wantsJson } from '../options';
import type { RegisterCommand } from './index';

/** SDS: the file-based secrets of files-mode sidecars; `-` for proxies whose secrets come from the node agent. */
const TYPES = ['CDS', 'LDS', 'EDS', 'RDS', 'SDS'] as const;

/** `citadel proxy-status`, as `istioctl proxy-status`: every connected proxy and where each xDS type stands. */
export const registerProxyStatus: RegisterCommand = (program: Command) => {
  addOutputOption(program.command('proxy-status'))
    .description('every proxy connected to citadel server (node id, workload, identity, replica) and per xDS type SYNCED, NOT SENT, STALE (sent, not ACKed) or NACKED with its error')
    .option('--server <url>', "the server's monitoring address; repeat for every replica", (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .action(async (o: { server?: string[]; output: string }) => {
      const servers = o.server ?? ['http://127.0.0.1:15014'];
      const all: ProxyStatus[] = [];
      for (const s of servers) {
        let res: Response;
        try {
          res = await fetch(new URL('/debug/syncz', s));
        } catch (err) {
          throw new UserError(`--server ${s}: cannot reach the monitoring port (${(err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : (err as Error).message}); is citadel server running there?`);
        }
        if (!res.ok) throw new UserError(`--server ${s}: /debug/syncz answered ${res.status}; is it citadel server's --monitoring-port?`);
        all.push(...((await res.json()) as ProxyStatus[]));
      }
      all.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
      if (wantsJson(o)) {
        process.stdout.write(JSON.stringify(all, null, 2) + '\n');
        return;
      }
      const rows = [['NAME', 'WORKLOAD', 'IDENTITY', 'VIA', 'REPLICA', ...TYPES]];
      for (const p of all) rows.push([p.nodeId, p.marathonId, p.identity, p.via, p.replica, ...TYPES.map((t) => p.types[t]?.status ?? '-')]);
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n');
      for (const p of all) for (const t of TYPES) if (p.types[t]?.error) process.stdout.write(`${p.nodeId} ${t} NACKED: ${p.types[t].error!.split('\n')[0].slice(0, 300)}\n`);
      if (all.length === 0) process.stdout.write('no proxy is connected\n');
    });
};
