import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { NodeAgent } from '../../agent/node-agent';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { checkHost } from '../../pki/identity';
import { looksLikeJoinToken } from '../../server/join-token';
import { splitCertificates } from '../../pki/pem';
import { addLogOptions, addTrustDomainOption, loggerFromFlags, trustDomainFromFlags } from '../options';
import type { RegisterCommand } from './index';

interface AgentFlags {
  caAddress: string;
  caRoot: string;
  joinToken?: string;
  joinTokenFile?: string;
  host: string;
  certsDir: string;
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

export const registerAgent: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('agent')
    .description('node agent (file mode): keep <certs-dir>/<ns>/<sa>/{cert-chain.pem,key.pem,root-cert.pem} for the workloads Marathon places on this host')
    .requiredOption('--ca-address <host:port>', "the CA's gRPC address (citadel server --grpc-port, 8060)")
    .requiredOption('--ca-root <file>', 'the Citadel root certificate (PEM) to trust')
    .option('--join-token <token>', 'one-time token from `citadel token create --host <host>`; needed only for the first start')
    .option('--join-token-file <file>', 'read the join token from a file instead (keeps it out of the process list)')
    .requiredOption('--host <host>', "this Mesos agent's hostname, as Marathon reports it for tasks")
    .requiredOption('--certs-dir <dir>', 'where the per-identity directories go; mount <dir>/<ns>/<sa> into the sidecar at /etc/certs')
    .option('--state-dir <dir>', 'where the node key and certificate are kept (default <certs-dir>/.citadel-agent)')
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
    const agent = new NodeAgent({
      caAddress: o.caAddress,
      caRootPem,
      joinToken,
      host: o.host,
      trustDomain,
      certsDir: o.certsDir,
      stateDir: o.stateDir,
      nodeCertTtlMs: parseDuration(o.nodeCertTtl, '--node-cert-ttl'),
      serverName: o.caServerName,
      logger,
    });
    await agent.start();
    logger.info('agent running', { host: o.host, certsDir: o.certsDir });
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        agent.stop().then(resolve, resolve);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
  });
};
