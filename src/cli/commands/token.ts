import { Command } from 'commander';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { checkHost } from '../../pki/identity';
import { newJoinToken } from '../../server/join-token';
import type { JoinTokenRecord, Store } from '../../store/store';
import { addOutputOption, addStoreUrlOptions, openStoreUrlFromFlags, wantsJson } from '../options';
import type { RegisterCommand } from './index';

const say = (line: string) => process.stdout.write(line + '\n');

async function withStore<T>(o: { store: string; zkAuthFile?: string }, fn: (s: Store) => Promise<T>): Promise<T> {
  const store = await openStoreUrlFromFlags(o);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The tokens a `token revoke` argument names: a hash prefix (at least 8 hex digits) that matches exactly one. */
function tokensByPrefix(tokens: JoinTokenRecord[], prefix: string): JoinTokenRecord[] {
  if (!/^[0-9a-f]{8,64}$/.test(prefix)) throw new UserError(`"${prefix}" is not a token id: give at least 8 hex digits of the hash \`citadel token list\` shows`);
  const found = tokens.filter((t) => t.hash.startsWith(prefix));
  if (found.length === 0) throw new UserError(`no unused join token ${prefix}…; \`citadel token list\` shows what there is`);
  if (found.length > 1) throw new UserError(`${found.length} join tokens start with ${prefix}; give more digits`);
  return found;
}

export const registerToken: RegisterCommand = (program: Command) => {
  const token = program.command('token').description('one-time join tokens that let a Mesos agent node obtain its node certificate');

  addStoreUrlOptions(
    token
      .command('create')
      .description('print a one-time join token for `citadel agent --join-token` on host H (the store keeps only its hash)')
      .requiredOption('--host <host>', "the Mesos agent's hostname, as Marathon reports it for tasks")
      .option('--ttl <duration>', 'how long the token may wait for its one use', '1h'),
  ).action(async (o: { host: string; ttl: string; store: string; zkAuthFile?: string }) => {
    const problem = checkHost(o.host);
    if (problem) throw new UserError(`--host: ${problem}`);
    const ttlMs = parseDuration(o.ttl, '--ttl');
    if (ttlMs <= 0) throw new UserError('--ttl must be positive');
    await withStore(o, async (store) => {
      const t = newJoinToken(o.host, ttlMs);
      await store.putJoinToken(t.record);
      process.stdout.write(t.token + '\n');
      process.stderr.write(`join token ${t.record.hash.slice(0, 12)} for host ${o.host}, valid once until ${t.record.expiresAt}\n`);
    });
  });

  addOutputOption(addStoreUrlOptions(token.command('list').description('list the join tokens not used yet: id (hash prefix), host, created, expires')))
    .option('--host <host>', 'only the tokens of this host')
    .action(async (o: { store: string; zkAuthFile?: string; host?: string; output: string }) => {
      await withStore(o, async (store) => {
        const now = Date.now();
        const tokens = (await store.listJoinTokens()).filter((t) => !o.host || t.host === o.host).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
        if (wantsJson(o)) {
          // The hash, never a token: the store has no token to show.
          say(JSON.stringify(tokens.map((t) => ({ id: t.hash.slice(0, 12), hash: t.hash, host: t.host, createdAt: t.createdAt, expiresAt: t.expiresAt, state: Date.parse(t.expiresAt) <= now ? 'expired' : 'valid' })), null, 2));
          return;
        }
        for (const t of tokens) {
          const state = Date.parse(t.expiresAt) <= now ? 'expired' : 'valid';
          say(`${t.hash.slice(0, 12)}  ${t.host.padEnd(32)} created ${t.createdAt}  expires ${t.expiresAt}  ${state}`);
        }
        say(`${tokens.length} unused join token${tokens.length === 1 ? '' : 's'} in ${store.url}`);
      });
    });

  addStoreUrlOptions(token.command('revoke [id]').description('revoke an unused join token by its id (a hash prefix from `token list`), or every token of --host'))
    .option('--host <host>', 'revoke every unused token of this host')
    .action(async (id: string | undefined, o: { store: string; zkAuthFile?: string; host?: string }) => {
      if (!id === !o.host) throw new UserError('name the token to revoke by its id, or give --host to revoke every token of a host (not both)');
      await withStore(o, async (store) => {
        const tokens = await store.listJoinTokens();
        const chosen = id ? tokensByPrefix(tokens, id) : tokens.filter((t) => t.host === o.host);
        let revoked = 0;
        for (const t of chosen) if (await store.consumeJoinToken(t.hash)) revoked++;
        say(`revoked ${revoked} join token${revoked === 1 ? '' : 's'}${o.host ? ` of host ${o.host}` : ''}`);
      });
    });
};
