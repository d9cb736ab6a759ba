import * as path from 'node:path';
import { Command } from 'commander';
import { UserError } from '../../common/errors';
import { openStore } from '../../store';
import { generateKekFile, loadKek } from '../../store/kek';
import { migrateStore } from '../../store/migrate';
import { rekeyKek, rekeyStore } from '../../store/rekey';
import type { Kek } from '../../store/store';
import { openZkStore } from '../../store/zk/zk-store';
import { addOutputOption, addStoreOption, addStoreUrlOptions, openStoreFromFlags, wantsJson, ZK_AUTH_FILE_HELP, zkAuthFromFlags } from '../options';
import { writeBundleFiles } from './cert';
import { TerminalProgress } from '../progress';
import type { RegisterCommand } from './index';

const say = (line: string) => process.stdout.write(line + '\n');

export const registerStore: RegisterCommand = (program: Command) => {
  const store = program.command('store').description('look into and maintain a store: its secrets, key-encryption keys, moving to another store');

  addOutputOption(addStoreOption(store.command('list')))
    .description('list the workload secrets in a store: namespace/name, SPIFFE ID, expiry, version')
    .option('-n, --namespace <ns>', 'only this namespace')
    .action(async (o: { store: string; kekFile?: string; namespace?: string; output: string }) => {
      const s = await openStoreFromFlags(o);
      try {
        const secrets = await s.listSecrets(o.namespace);
        if (wantsJson(o)) {
          say(JSON.stringify(secrets.map((x) => ({ namespace: x.namespace, name: x.name, version: x.version, ...x.metadata })), null, 2));
          return;
        }
        for (const x of secrets) say(`${`${x.namespace}/${x.name}`.padEnd(40)} ${x.metadata.spiffeId.padEnd(56)} expires ${x.metadata.notAfter}  v${x.version}`);
        say(`${secrets.length} secret${secrets.length === 1 ? '' : 's'} in ${s.url}${o.namespace ? ` namespace ${o.namespace}` : ''}`);
      } finally {
        await s.close();
      }
    });

  addOutputOption(addStoreOption(store.command('get <namespace> <secret>')), { short: false })
    .description('show one secret (istio.<sa>, or just <sa>); with -o, write its cert-chain.pem, key.pem and root-cert.pem into DIR, as a sidecar sees them in /etc/certs')
    .option('-o, --out <dir>', 'directory to write the three files into (created if missing)')
    .action(async (namespace: string, secret: string, o: { store: string; kekFile?: string; out?: string; output: string }) => {
      const name = secret.startsWith('istio.') ? secret : `istio.${secret}`;
      const s = await openStoreFromFlags(o);
      try {
        let found;
        try {
          found = await s.getSecret(namespace, name);
        } catch (err) {
          throw new UserError((err as Error).message);
        }
        if (!found) throw new UserError(`there is no secret ${namespace}/${name} in ${s.url}; \`citadel store list\` shows what there is`);
        const m = found.metadata;
        if (o.out) await writeBundleFiles(o.out, found);
        if (wantsJson(o)) {
          // The metadata only: the key stays in the files -o writes, never on stdout.
          say(JSON.stringify({ namespace, name, version: found.version, ...m, ...(o.out ? { wrote: o.out } : {}) }, null, 2));
          return;
        }
        say(`${namespace}/${name} (version ${found.version})`);
        say(`  ${m.spiffeId}, serial ${m.serialNumber}`);
        say(`  valid ${m.notBefore} .. ${m.notAfter}, written ${m.updatedAt}`);
        if (o.out) {
          say(`  wrote ${path.join(o.out, '{cert-chain.pem,key.pem,root-cert.pem}')}`);
        }
      } finally {
        await s.close();
      }
    });

  store
    .command('rekey')
    .description('re-seal every private key (workload secrets and the CA key) under a new key-encryption key; nothing is written unless every key opens')
    .requiredOption('--store <url>', 'the store: file:<dir> or zk://host:port[,host:port]/<chroot>')
    .option('--old-kek <file>', 'the KEK the keys are sealed with now (omit when they are stored in plaintext)')
    .requiredOption('--new-kek <file>', 'the KEK to seal them with')
    .option('--zk-auth-file <file>', ZK_AUTH_FILE_HELP)
    .action(async (o: { store: string; oldKek?: string; newKek: string; zkAuthFile?: string }) => {
      const newKek = loadKek(o.newKek);
      const oldKek = o.oldKek ? loadKek(o.oldKek) : undefined;
      const s = await openStore(o.store, { kek: rekeyKek(newKek, oldKek), zkAuth: zkAuthFromFlags(o), exclusive: true });
      try {
        const r = await new TerminalProgress().around((show) => rekeyStore(s, newKek.keyId, show));
        say(`rekeyed ${s.url}: ${r.secrets} secrets${r.caSecret ? ' and the CA secret' : ''} now sealed with KEK ${r.keyId}; start citadel with --kek-file ${o.newKek}`);
      } finally {
        await s.close();
      }
    });

  store
    .command('migrate')
    .description('copy the CA secret, every secret, unused join tokens, node records, evictions and the mesh policy to another store (file: to zk://, or to file: and back as a backup); running it again changes nothing')
    .requiredOption('--from <url>', 'the store to copy from')
    .requiredOption('--to <url>', 'the store to copy to')
    .option('--kek-file <file>', 'key-encryption key of both stores')
    .option('--zk-auth-file <file>', `${ZK_AUTH_FILE_HELP} (for whichever store is zk://)`)
    .action(async (o: { from: string; to: string; kekFile?: string; zkAuthFile?: string }) => {
      const kek: Kek | undefined = o.kekFile ? loadKek(o.kekFile) : undefined;
      const zkAuth = zkAuthFromFlags(o);
      const authOf = (url: string) => (url.startsWith('zk://') ? zkAuth : undefined);
      if (zkAuth && !authOf(o.from) && !authOf(o.to)) throw new UserError('--zk-auth-file is for zk:// stores, and neither --from nor --to is one');
      const from = await openStore(o.from, { kek, zkAuth: authOf(o.from) });
      try {
        const to = await openStore(o.to, { kek, zkAuth: authOf(o.to), exclusive: true });
        try {
          const r = await new TerminalProgress().around((show) => migrateStore(from, to, show));
          say(`migrated ${from.url} -> ${to.url}: ${r.copied} secrets copied, ${r.unchanged} unchanged, CA secret ${r.ca}, ${r.tokens} join tokens, ${r.nodes} node records, ${r.evictions} evictions, policy ${r.policies}${r.policyDocuments ? ` (${r.policyDocuments} documents)` : ''}`);
        } finally {
          await to.close();
        }
      } finally {
        await from.close();
      }
    });

  addStoreUrlOptions(store.command('secure'))
    .description('restrict every znode of a zk:// store to the --zk-auth-file identity (ZooKeeper ACLs); stop the replicas first, start them again with --zk-auth-file')
    .action(async (o: { store: string; zkAuthFile?: string }) => {
      if (!o.store.startsWith('zk://')) throw new UserError(`store secure is for zk:// stores; ${o.store} is protected by the permissions of its directory`);
      const auth = zkAuthFromFlags(o);
      if (!auth) throw new UserError('store secure needs --zk-auth-file: the credentials every znode will be restricted to');
      const s = await openZkStore(o.store, { auth, requireSecured: false });
      try {
        const n = await new TerminalProgress().around((show) => s.secureTree((done, total) => show(`securing ${s.url}: ${done}/${total} znodes`)));
        say(`secured ${n} znodes under ${s.url}: only ${auth.describe} may read or change them`);
      } finally {
        await s.close();
      }
    });

  store
    .command('kek-generate <file>')
    .description('write a new random key-encryption key (32 bytes, mode 0600) for --kek-file; never overwrites')
    .action((file: string) => {
      const kek = generateKekFile(file);
      say(`wrote KEK ${kek.keyId} to ${file}; keep a copy: keys sealed with it cannot be read without it`);
    });
};
