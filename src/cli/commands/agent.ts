import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { FileAgent } from '../../agent/file-agent';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { createLogger, LogFormat, LogLevel } from '../../common/log';
import { checkHost } from '../../pki/identity';
import { splitCertificates } from '../../pki/pem';
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
  logFormat: LogFormat;
  logLevel: LogLevel;
}

export const registerAgent: RegisterCommand = (program: Command) => {
  program
    .command('agent')
    .description('node agent (file mode): keep <certs-dir>/<ns>/<sa>/{cert-chain.pem,key.pem,root-cert.pem} for the workloads Marathon places on this host')
    .requiredOption('--ca-address <host:port>', "the CA's gRPC address (citadel server --grpc-port, 8060)")
    .requiredOption('--ca-root <file>', 'the Citadel root certificate (PEM) to trust')
    .option('--join-token <token>', 'one-time token from `citadel token create --host <host>`; needed only for the first start')
    .option('--join-token-file <file>', 'read the join token from a file instead (keeps it out of the process list)')
    .requiredOption('--host <host>', "this Mesos agent's hostname, as Marathon reports it for tasks")
    .requiredOption('--certs-dir <dir>', 'where the per-identity directories go; mount <dir>/<ns>/<sa> into the sidecar at /etc/certs')
    .option('--state-dir <dir>', 'where the node key and certificate are kept (default <certs-dir>/.citadel-agent)')
    .option('--trust-domain <domain>', 'the mesh trust domain', 'cluster.local')
    .option('--node-cert-ttl <duration>', 'lifetime to ask for the node certificate (renewed at half of it)', '24h')
    .option('--ca-server-name <name>', "the name checked in the CA's server certificate", 'istio-ca')
    .option('--log-format <format>', 'json or text', 'json')
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .action(async (o: AgentFlags) => {
      const logger = createLogger({ format: o.logFormat, level: o.logLevel });
      const problem = checkHost(o.host);
      if (problem) throw new UserError(`--host: ${problem}`);
      let caRootPem: string;
      try {
        caRootPem = readFileSync(o.caRoot, 'utf8');
      } catch (err) {
        throw new UserError(`--ca-root ${o.caRoot}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      if (splitCertificates(caRootPem).length === 0) throw new UserError(`--ca-root ${o.caRoot}: no PEM certificate in it`);
      let joinToken = o.joinToken;
      if (o.joinTokenFile) {
        try {
          joinToken = readFileSync(o.joinTokenFile, 'utf8').trim();
        } catch (err) {
          throw new UserError(`--join-token-file ${o.joinTokenFile}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        }
      }
      const agent = new FileAgent({
        caAddress: o.caAddress,
        caRootPem,
        joinToken,
        host: o.host,
        trustDomain: o.trustDomain,
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
