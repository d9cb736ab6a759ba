import { Command, Option } from 'commander';
import { CaConfig, DEFAULT_CA_CONFIG } from '../ca/config';
import { parseDuration } from '../common/duration';
import { UserError } from '../common/errors';
import { createLogger, LogFormat, Logger, LogLevel } from '../common/log';
import { checkTrustDomain } from '../pki/identity';
import { KEY_ALGORITHMS, KeyAlgorithm } from '../pki/keys';
import { DEFAULT_STORE_URL, openStore } from '../store';
import { loadKek } from '../store/kek';
import type { Kek, Store } from '../store/store';
import { readZkAuthFile, ZkAuth } from '../store/zk/auth';

/** The one config loader: Citadel's flag names, parsed and checked in one place. */

export const ZK_AUTH_FILE_HELP = 'ZooKeeper digest credentials (one line user:password): presented to ZooKeeper, and every znode citadel creates is restricted to them';

/** `--store` and `--zk-auth-file`, for commands that open a store but handle no private key. */
export function addStoreUrlOptions(cmd: Command): Command {
  return cmd
    .option('--store <url>', 'where secrets and the CA root live: file:<dir> or zk://host:port[,host:port]/<chroot>', DEFAULT_STORE_URL)
    .option('--zk-auth-file <file>', ZK_AUTH_FILE_HELP);
}

export function addStoreOption(cmd: Command): Command {
  return addStoreUrlOptions(cmd).option('--kek-file <file>', 'key-encryption key (32 random bytes) for private keys at rest');
}

/** The ZooKeeper credentials of --zk-auth-file, when given. */
export function zkAuthFromFlags(o: { zkAuthFile?: string }): ZkAuth | undefined {
  return o.zkAuthFile ? readZkAuthFile(o.zkAuthFile) : undefined;
}

/** Opens the store named by --store with --zk-auth-file, for commands that read no private key. */
export function openStoreUrlFromFlags(o: { store: string; zkAuthFile?: string }, logger?: Logger): Promise<Store> {
  return openStore(o.store, { zkAuth: zkAuthFromFlags(o), logger });
}

/**
 * `-o, --output text|json` (`--output` alone where `-o` already names a directory), the one way every
 * read command is asked for JSON; `--json` stays as a hidden alias of `-o json`.
 */
export function addOutputOption(cmd: Command, opts: { short?: boolean } = {}): Command {
  return cmd
    .addOption(new Option(`${opts.short === false ? '' : '-o, '}--output <format>`, 'text for people, json for programs').choices(['text', 'json']).default('text'))
    .addOption(new Option('--json', 'same as --output json').hideHelp().implies({ output: 'json' }));
}

/** Whether --output (or the --json alias) asked for JSON. */
export function wantsJson(o: { output?: string; json?: boolean }): boolean {
  return o.output === 'json' || o.json === true;
}

/**
 * `--trust-domain`, for every command that names identities; `defaultFrom` names where the
 * value comes from when the flag is absent (the inject config), else it defaults to cluster.local.
 */
export function addTrustDomainOption(cmd: Command, opts: { defaultFrom?: string } = {}): Command {
  if (opts.defaultFrom !== undefined) return cmd.option('--trust-domain <domain>', `SPIFFE trust domain (default: ${opts.defaultFrom}, else ${DEFAULT_CA_CONFIG.trustDomain})`);
  return cmd.option('--trust-domain <domain>', 'SPIFFE trust domain', DEFAULT_CA_CONFIG.trustDomain);
}

/** The trust domain, checked: a bad one is a one-line usage error (exit 2); absent stays absent. */
export function trustDomainFromFlags(o: { trustDomain: string }): string;
export function trustDomainFromFlags(o: { trustDomain?: string }): string | undefined;
export function trustDomainFromFlags(o: { trustDomain?: string }): string | undefined {
  if (o.trustDomain === undefined) return undefined;
  const problem = checkTrustDomain(o.trustDomain);
  if (problem) throw new UserError(`--trust-domain: ${problem}`);
  return o.trustDomain;
}

export function addCaOptions(cmd: Command): Command {
  return addTrustDomainOption(cmd)
    .addOption(new Option('--key-algorithm <alg>', 'key type of a new root and of keys the CA generates').choices([...KEY_ALGORITHMS]).default(DEFAULT_CA_CONFIG.keyAlgorithm))
    .option('--self-signed-ca-cert-ttl <duration>', 'lifetime of a new self-signed root', '3650d')
    .option('--workload-cert-ttl <duration>', 'default lifetime of workload certificates', '24h')
    .option('--max-workload-cert-ttl <duration>', 'longest lifetime a caller may ask for', '90d')
    .option('--signing-cert <file>', 'plugged-in CA: the signing (CA) certificate')
    .option('--signing-key <file>', 'plugged-in CA: the signing key')
    .option('--root-cert <file>', 'plugged-in CA: the root certificate')
    .option('--cert-chain <file>', 'plugged-in CA: intermediates from the signing certificate up to the root');
}

export interface CaFlagValues {
  trustDomain: string;
  keyAlgorithm: KeyAlgorithm;
  selfSignedCaCertTtl: string;
  workloadCertTtl: string;
  maxWorkloadCertTtl: string;
  signingCert?: string;
  signingKey?: string;
  rootCert?: string;
  certChain?: string;
}

export function caConfigFromFlags(o: CaFlagValues): CaConfig {
  const config: CaConfig = {
    ...DEFAULT_CA_CONFIG,
    trustDomain: trustDomainFromFlags(o),
    keyAlgorithm: o.keyAlgorithm,
    selfSignedCaCertTtlMs: parseDuration(o.selfSignedCaCertTtl, '--self-signed-ca-cert-ttl'),
    workloadCertTtlMs: parseDuration(o.workloadCertTtl, '--workload-cert-ttl'),
    maxWorkloadCertTtlMs: parseDuration(o.maxWorkloadCertTtl, '--max-workload-cert-ttl'),
  };
  if (config.workloadCertTtlMs > config.maxWorkloadCertTtlMs) {
    throw new UserError('--workload-cert-ttl is longer than --max-workload-cert-ttl; lower the first or raise the second');
  }
  const plugged = [o.signingCert, o.signingKey, o.rootCert];
  if (plugged.some(Boolean) || o.certChain) {
    if (!plugged.every(Boolean)) throw new UserError('a plugged-in CA needs all of --signing-cert, --signing-key and --root-cert (and optionally --cert-chain)');
    config.plugged = { signingCert: o.signingCert!, signingKey: o.signingKey!, rootCert: o.rootCert!, certChain: o.certChain };
  }
  return config;
}

export function addLogOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--log-format <format>', 'json lines, or text for people').choices(['json', 'text']).default('json'))
    .addOption(new Option('--log-level <level>', 'least severe level logged').choices(['debug', 'info', 'warn', 'error']).default('info'));
}

export function loggerFromFlags(o: { logFormat?: string; logLevel?: string }): Logger {
  return createLogger({ format: (o.logFormat ?? 'json') as LogFormat, level: (o.logLevel ?? 'info') as LogLevel });
}

/**
 * Opens the store named by --store, with the --kek-file key and --zk-auth-file credentials when
 * given; `exclusive` for the processes that write secrets (a file store's writer lock).
 */
export async function openStoreFromFlags(o: { store: string; kekFile?: string; zkAuthFile?: string }, logger?: Logger, access: { exclusive?: boolean } = {}): Promise<Store> {
  let kek: Kek | undefined;
  if (o.kekFile) {
    try {
      kek = loadKek(o.kekFile);
    } catch (err) {
      throw new UserError(`--kek-file: ${(err as Error).message}`);
    }
  } else {
    logger?.warn('private keys are stored unencrypted; pass --kek-file to encrypt them at rest', { store: o.store });
  }
  return openStore(o.store, { kek, logger, zkAuth: zkAuthFromFlags(o), exclusive: access.exclusive });
}
