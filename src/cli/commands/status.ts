import { Command, Option } from 'commander';
import { formatDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import type { RegisterCommand } from './index';

interface ServerStatus {
  version: string;
  replica: string;
  trustDomain: string;
  root: { subject: string; notAfter: string; sha256: string; selfSigned: boolean };
  leader: boolean;
  store: { url: string; unavailable: string | null };
  marathon: { url: string | null; connected: boolean };
  secrets: number;
  identities: number;
  soonestExpiry: string | null;
  connectedNodes: number;
  proxies: { connected: number; notSynced: number };
  recentErrors: Array<{ time: string; level: string; msg: string; fields: Record<string, unknown> }>;
}

/** `citadel status`: is my CA healthy, and what expires next? From each replica's monitoring port. */
export const registerStatus: RegisterCommand = (program: Command) => {
  program
    .command('status')
    .description('is the CA healthy and what expires next: root, leader, store, Marathon, secrets, connected nodes and proxies, the soonest expiry, recent errors (from the server monitoring port)')
    .option('--server <url>', "the server's monitoring address; repeat for every replica", (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .addOption(new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text'))
    .action(async (o: { server?: string[]; output: string }) => {
      const servers = o.server ?? ['http://127.0.0.1:15014'];
      const all: Array<ServerStatus & { server: string; healthy: boolean; failing: Array<{ name: string; why: string }> }> = [];
      for (const s of servers) {
        const get = async (p: string) => {
          try {
            return await fetch(new URL(p, s));
          } catch (err) {
            const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
            throw new UserError(`--server ${s}: cannot reach the monitoring port (${cause}); is citadel server running there?`);
          }
        };
        const status = await get('/debug/status');
        if (!status.ok) throw new UserError(`--server ${s}: /debug/status answered ${status.status}; is it citadel server's --monitoring-port?`);
        const health = (await (await get('/healthz')).json()) as { ready: boolean; failing: Array<{ name: string; why: string }> };
        all.push({ ...((await status.json()) as ServerStatus), server: s, healthy: health.ready, failing: health.failing });
      }
      if (o.output === 'json') {
        process.stdout.write(JSON.stringify(all.length === 1 ? all[0] : all, null, 2) + '\n');
      } else {
        for (const s of all) process.stdout.write(describe(s));
      }
      if (all.some((s) => !s.healthy)) process.exitCode = 1;
    });
};

function describe(s: ServerStatus & { server: string; healthy: boolean; failing: Array<{ name: string; why: string }> }): string {
  const left = (iso: string | null) => (iso ? `${iso} (in ${formatDuration(Date.parse(iso) - Date.now())})` : 'none');
  const lines = [
    `${s.server}: citadel ${s.version} on ${s.replica}: ${s.healthy ? 'healthy' : `NOT READY: ${s.failing.map((f) => `${f.name}: ${f.why}`).join('; ')}`}`,
    `  root:         ${s.root.subject}, sha256 ${s.root.sha256}, expires ${left(s.root.notAfter)}${s.root.selfSigned ? ' (self-signed)' : ''}`,
    `  trust domain: ${s.trustDomain}`,
    `  leader:       ${s.leader ? 'yes (writes secrets)' : 'no (signs only)'}`,
    `  store:        ${s.store.url}${s.store.unavailable ? ` UNAVAILABLE: ${s.store.unavailable}` : ''}`,
    `  marathon:     ${s.marathon.url ?? '(none)'}${s.marathon.connected ? '' : ' NOT CONNECTED'}`,
    `  secrets:      ${s.secrets} for ${s.identities} identities; soonest expiry ${left(s.soonestExpiry)}`,
    `  nodes:        ${s.connectedNodes} agents connected`,
    `  proxies:      ${s.proxies.connected} connected${s.proxies.notSynced ? `, ${s.proxies.notSynced} not synced (citadel proxy-status)` : ''}`,
    `  recent errors: ${s.recentErrors.length === 0 ? 'none' : ''}`,
    ...s.recentErrors.slice(0, 10).map((e) => `    ${e.time} ${e.level} ${e.msg}${e.fields.error ? `: ${String(e.fields.error).split('\n')[0].slice(0, 200)}` : ''}`),
  ];
  return lines.join('\n') + '\n';
}
