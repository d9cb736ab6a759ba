import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { newRegistry, startMonitoring } from '../../common/monitoring';
import { PACKAGE_VERSION } from '../../common/package-root';
import { DEFAULT_CERTS_DIR, DEFAULT_SDS_DIR } from '../../mesh/bootstrap/contract';
import { KEY_ALGORITHMS, KeyAlgorithm } from '../../pki/keys';
import { NodeAgent } from '../../agent/node-agent';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { checkHost } from '../../pki/identity';
import { looksLikeJoinToken } from '../../server/join-token';
import { splitCertificates } from '../../pki/pem';
import { addLogOptions, addTrustDomainOption, loggerFromFlags, trustDomainFromFlags } from '../options';
import type { RegisterCommand } from './index';

interface AgentFlags {
  sdsDir?: string;
  sdsSocketName: string;
  sdsSocketMode: string;
  sdsDirMode: string;
  sdsDirOwner?: string;
  secretTtl: string;
  keyAlgorithm: KeyAlgorithm;
  monitoringPort: string;
  xdsAddress?: string;
  caAddress: string;
  caRoot: string;
  joinToken?: string;
  joinTokenFile?: string;
  host: string;
  certsDir?: string;
  stateDir?: string;
  trustDomain: string;
  nodeCertTtl: string;
  caServerName: string;
  logFormat: string;
  logLevel: string;
}

/** Reads a file named by a flag; a one-line error names the flag. */
function readFlagFile(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`${flag} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function octal(text: string, flag: string, example = '0666'): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new UserError(`${flag}: "${text}" is not an octal mode like ${example}`);
  return parseInt(text, 8);
}

/** The identity directory's mode: the agent (its owner) must be able to make and remove the sockets in it. */
function dirMode(text: string): number {
  const mode = octal(text, '--sds-dir-mode', '0750');
  if ((mode & 0o700) !== 0o700) throw new UserError(`--sds-dir-mode: "${text}" must give the owner rwx (7 first, e.g. 0750): the agent makes and removes the sockets in the directory`);
  // The sockets are 0666 by default: the directory is what keeps other users from an identity's key.
  if (mode & 0o007) throw new UserError(`--sds-dir-mode: "${text}" gives other users access (last digit must be 0, e.g. 0750): anyone who can reach a socket gets that identity's key`);
  return mode;
}

function owner(text: string | undefined): { uid: number; gid?: number } | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(text);
  if (!m) throw new UserError(`--sds-dir-owner: "${text}" is not UID[:GID] (numbers, e.g. 1337:1337)`);
  return { uid: Number(m[1]), gid: m[2] === undefined ? undefined : Number(m[2]) };
}

/** The CA takes whole seconds (0 = its default, 24h): below a second would ask for the default and renew it at once. */
function secretTtl(text: string): number {
  const ms = parseDuration(text, '--secret-ttl');
  if (ms < 1000) throw new UserError(`--secret-ttl: "${text}" is under a second; the CA signs for whole seconds (e.g. 10s, 1h, 24h)`);
  return ms;
}

/** --xds-address, or the CA's host on istiod's port. */
function xdsAddressOf(o: { xdsAddress?: string; caAddress: string }): string | undefined {
  if (o.xdsAddress === 'none') return undefined;
  if (o.xdsAddress) return o.xdsAddress;
  const host = o.caAddress.replace(/:\d+$/, '');
  return `${host}:15012`;
}

function portNumber(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`${flag}: "${text}" is not a port number`);
  return n;
}

export const registerAgent: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('agent')
    .description('node agent: for the workloads Marathon places on this host, serve Envoy SDS on <sds-dir>/<ns>/<sa>/socket (keys made here) and/or keep <certs-dir>/<ns>/<sa>/{cert-chain.pem,key.pem,root-cert.pem}')
    .requiredOption('--ca-address <host:port>', "the CA's gRPC address (citadel server --grpc-port, 8060)")
    .requiredOption('--ca-root <file>', 'the Citadel root certificate (PEM) to trust')
    .option('--join-token <token>', 'one-time token from `citadel token create --host <host>`; needed only for the first start')
    .option('--join-token-file <file>', 'read the join token from a file instead (keeps it out of the process list)')
    .requiredOption('--host <host>', "this Mesos agent's hostname, as Marathon reports it for tasks")
    .option('--certs-dir <dir>', `file mode: where the per-identity directories go; mount <dir>/<ns>/<sa> into the sidecar at /etc/certs (conventionally ${DEFAULT_CERTS_DIR})`)
    .option('--sds-dir <dir>', `SDS mode: a socket per identity at <dir>/<ns>/<sa>/<socket name>; mount <dir>/<ns>/<sa> into the sidecar (conventionally ${DEFAULT_SDS_DIR})`)
    .option('--sds-socket-name <name>', 'the socket file in each identity directory (uds_path for Istio 1.1-era mounts)', 'socket')
    .option('--sds-socket-mode <octal>', 'mode of each SDS (and xds) socket', '0666')
    .option('--sds-dir-mode <octal>', "mode of each identity directory <sds-dir>/<ns>/<sa> (Istio's 0750: the owner and its group enter it)", '0750')
    .option('--sds-dir-owner <uid[:gid]>', 'owner of each identity directory and socket (e.g. the sidecar user 1337)')
    .option('--secret-ttl <duration>', "lifetime asked for SDS workload certificates, renewed at half of it (Istio's SECRET_TTL)", '24h')
    .addOption(new Option('--key-algorithm <alg>', 'key type of SDS workload keys').choices([...KEY_ALGORITHMS]).default('ec-p256'))
    .option('--xds-address <host:port>', "SDS mode: proxy each identity's xDS from <sds-dir>/<ns>/<sa>/xds to citadel server --xds-port (default: the --ca-address host, port 15012); 'none' to serve no xds sockets")
    .option('--monitoring-port <port>', "/metrics, /healthz (ready), /livez (alive), /debug/sds (the Istio agent's status port)", '15020')
    .option('--state-dir <dir>', 'where the node key and certificate are kept (default <certs-dir or sds-dir>/.citadel-agent; keep it on a persistent disk)')
    .option('--node-cert-ttl <duration>', 'lifetime to ask for the node certificate (renewed at half of it)', '24h')
    .option('--ca-server-name <name>', "the name checked in the CA's server certificate", 'istio-ca');
  addLogOptions(addTrustDomainOption(cmd)).action(async (o: AgentFlags) => {
    const logger = loggerFromFlags(o);
    const trustDomain = trustDomainFromFlags(o);
    const problem = checkHost(o.host);
    if (problem) throw new UserError(`--host: ${problem}`);
    const caRootPem = readFlagFile('--ca-root', o.caRoot);
    if (splitCertificates(caRootPem).length === 0) throw new UserError(`--ca-root ${o.caRoot}: no PEM certificate in it`);
    const joinToken = o.joinTokenFile ? readFlagFile('--join-token-file', o.joinTokenFile).trim() : o.joinToken;
    if (joinToken !== undefined && !looksLikeJoinToken(joinToken)) {
      throw new UserError(`${o.joinTokenFile ? `--join-token-file ${o.joinTokenFile}` : '--join-token'}: not a citadel join token (cjt1.<43 characters>); make one with \`citadel token create --host ${o.host}\``);
    }
    if (!o.certsDir && !o.sdsDir) throw new UserError('give --sds-dir (SDS mode), --certs-dir (file mode), or both');
    const registry = newRegistry();
    const agent = new NodeAgent({
      caAddress: o.caAddress,
      caRootPem,
      joinToken,
      host: o.host,
      trustDomain,
      certsDir: o.certsDir,
      sds: o.sdsDir
        ? { sdsDir: o.sdsDir, socketName: o.sdsSocketName, socketMode: octal(o.sdsSocketMode, '--sds-socket-mode'), dirMode: dirMode(o.sdsDirMode), dirOwner: owner(o.sdsDirOwner), secretTtlMs: secretTtl(o.secretTtl), keyAlgorithm: o.keyAlgorithm, xdsAddress: xdsAddressOf(o) }
        : undefined,
      registry,
      stateDir: o.stateDir,
      nodeCertTtlMs: parseDuration(o.nodeCertTtl, '--node-cert-ttl'),
      serverName: o.caServerName,
      logger,
    });
    const monitoring = await startMonitoring({ port: portNumber(o.monitoringPort, '--monitoring-port'), registry, version: PACKAGE_VERSION, logger });
    for (const c of agent.readiness()) monitoring.addReadinessCheck(c);
    monitoring.addJsonRoute('/debug/sds', () => ({ identities: agent.sds?.identities() ?? [], certificates: (agent.workloadCerts?.list() ?? []).map((c) => ({ spiffeId: c.spiffeId, serial: c.serialHex, notAfter: c.notAfter.toISOString() })), lastNack: agent.sds?.lastNack }));
    try {
      await agent.start();
    } catch (err) {
      // A refused join token (say) ends the agent: nothing may keep the process alive after it.
      await agent.stop().catch(() => undefined);
      await monitoring.close();
      throw err;
    }
    logger.info('agent running', { host: o.host, certsDir: o.certsDir, sdsDir: o.sdsDir, monitoringPort: monitoring.port });
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        agent.stop().then(() => monitoring.close()).then(resolve, resolve);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
  });
};
