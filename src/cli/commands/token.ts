import { Command } from 'commander';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { checkHost } from '../../pki/identity';
import { DEFAULT_STORE_URL, openStore } from '../../store';
import { newJoinToken } from '../../server/join-token';
import type { RegisterCommand } from './index';

export const registerToken: RegisterCommand = (program: Command) => {
  const token = program.command('token').description('one-time join tokens that let a Mesos agent node obtain its node certificate');

  token
    .command('create')
    .description('print a one-time join token for `citadel agent --join-token` on host H (the store keeps only its hash)')
    .requiredOption('--host <host>', "the Mesos agent's hostname, as Marathon reports it for tasks")
    .option('--ttl <duration>', 'how long the token may wait for its one use', '1h')
    .option('--store <url>', "the CA's store: file:<dir> or zk://host:port[,host:port]/<chroot>", DEFAULT_STORE_URL)
    .action(async (o: { host: string; ttl: string; store: string }) => {
      const problem = checkHost(o.host);
      if (problem) throw new UserError(`--host: ${problem}`);
      const ttlMs = parseDuration(o.ttl, '--ttl');
      if (ttlMs <= 0) throw new UserError('--ttl must be positive');
      const store = await openStore(o.store);
      try {
        const t = newJoinToken(o.host, ttlMs);
        await store.putJoinToken(t.record);
        process.stdout.write(t.token + '\n');
        process.stderr.write(`join token for host ${o.host}, valid once until ${t.record.expiresAt}\n`);
      } finally {
        await store.close();
      }
    });
};
