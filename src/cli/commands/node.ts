import { Command, Option } from 'commander';
import { sleep } from '../../common/backoff';
import { UserError } from '../../common/errors';
import { checkHost } from '../../pki/identity';
import { isEvicted, NodeEviction, NodeRecord } from '../../store/store';
import { addStoreUrlOptions, openStoreUrlFromFlags } from '../options';
import type { RegisterCommand } from './index';

const say = (line: string) => process.stdout.write(line + '\n');

/** One row of `citadel node list`. */
interface NodeStatus {
  host: string;
  serialNumber?: string;
  issuedAt?: string;
  notAfter?: string;
  lastContact?: string;
  evictedAt?: string;
  evictionReason?: string;
  status: 'active' | 'expired' | 'evicted';
}

export function nodeStatuses(records: NodeRecord[], evictions: NodeEviction[], now = Date.now()): NodeStatus[] {
  const byHost = new Map<string, NodeStatus>();
  const evictionOf = new Map(evictions.map((e) => [e.host, e]));
  for (const r of records) {
    const e = evictionOf.get(r.host);
    const status = isEvicted(Date.parse(r.issuedAt), e) ? 'evicted' : Date.parse(r.notAfter) <= now ? 'expired' : 'active';
    byHost.set(r.host, { host: r.host, serialNumber: r.serialNumber, issuedAt: r.issuedAt, notAfter: r.notAfter, lastContact: r.lastContact, evictedAt: e?.evictedAt, evictionReason: e?.reason, status });
  }
  for (const e of evictions) if (!byHost.has(e.host)) byHost.set(e.host, { host: e.host, evictedAt: e.evictedAt, evictionReason: e.reason, status: 'evicted' });
  return [...byHost.values()].sort((a, b) => a.host.localeCompare(b.host));
}

export const registerNode: RegisterCommand = (program: Command) => {
  const node = program.command('node').description('the Mesos agent nodes the CA knows: their node certificates, last contact, eviction');

  addStoreUrlOptions(node.command('list').description('list the nodes seen: node certificate serial and expiry, last contact, and whether they are evicted'))
    .addOption(new Option('-o, --output <format>', 'text for people, json for programs').choices(['text', 'json']).default('text'))
    .action(async (o: { store: string; zkAuthFile?: string; output: string }) => {
      const store = await openStoreUrlFromFlags(o);
      try {
        const rows = nodeStatuses(await store.listNodeRecords(), await store.listNodeEvictions());
        if (o.output === 'json') {
          say(JSON.stringify(rows, null, 2));
          return;
        }
        say(`${'HOST'.padEnd(32)} ${'NODE CERT SERIAL'.padEnd(32)} ${'NOT AFTER'.padEnd(24)} ${'LAST CONTACT'.padEnd(24)} STATUS`);
        for (const r of rows) {
          const status = r.status === 'evicted' ? `evicted ${r.evictedAt}${r.evictionReason ? ` (${r.evictionReason})` : ''}` : r.status;
          say(`${r.host.padEnd(32)} ${(r.serialNumber ?? '-').padEnd(32)} ${(r.notAfter ?? '-').padEnd(24)} ${(r.lastContact ?? '-').padEnd(24)} ${status}`);
        }
        say(`${rows.length} node${rows.length === 1 ? '' : 's'} in ${store.url}`);
      } finally {
        await store.close();
      }
    });

  addStoreUrlOptions(node.command('evict <host>').description("refuse the node's certificate from now on on every replica, close its feeds and revoke its unused join tokens; only a new join token admits it again"))
    .option('--reason <text>', 'why, for `node list` and the audit log', '')
    .action(async (host: string, o: { store: string; zkAuthFile?: string; reason: string }) => {
      const problem = checkHost(host);
      if (problem) throw new UserError(problem);
      if (/[\r\n]/.test(o.reason)) throw new UserError('--reason must be one line');
      const store = await openStoreUrlFromFlags(o);
      try {
        // On the next whole second: certificate times have second precision, and waiting for it
        // below means a certificate issued after this command returns is never caught by it.
        const evictedAt = new Date(Math.ceil((Date.now() + 1) / 1000) * 1000);
        await store.putNodeEviction({ host, evictedAt: evictedAt.toISOString(), reason: o.reason });
        let revoked = 0;
        for (const t of await store.listJoinTokens()) if (t.host === host && (await store.consumeJoinToken(t.hash))) revoked++;
        const record = (await store.listNodeRecords()).find((r) => r.host === host);
        await sleep(Math.max(0, evictedAt.getTime() - Date.now()));
        say(`evicted node ${host} at ${evictedAt.toISOString()}: every replica refuses its node certificate${record ? ` (serial ${record.serialNumber}, valid until ${record.notAfter})` : ''} and closes its feeds`);
        say(`  ${revoked} unused join token${revoked === 1 ? '' : 's'} revoked; to admit it again: citadel token create --host ${host}`);
        say('  workload certificates it already holds stay valid until they expire (there is no revocation list)');
      } finally {
        await store.close();
      }
    });
};
