import { Command, Option } from 'commander';
import { writeFileAtomic } from '../../common/atomic-file';
import { UserError } from '../../common/errors';
import { CAPTURE_MODES, CERT_MODES, CERTS_MOUNT_PATH, DEFAULT_ADMIN_PORT, DEFAULT_XDS_ADDRESS, SDS_MOUNT_PATH, type CaptureMode, type CertMode } from '../../mesh/bootstrap/contract';
import { envoyBootstrapYaml } from '../../mesh/bootstrap/envoy';
import { parseHostPort } from '../../mesh/bootstrap/host-port';
import { absoluteMarathonId, proxyIdentityOf } from '../../mesh/bootstrap/identity';
import { checkNamespace, checkServiceAccount, type WorkloadIdentity } from '../../pki/identity';
import { addTrustDomainOption, trustDomainFromFlags } from '../options';
import type { RegisterCommand } from './index';

export interface ProxyIdentityFlags {
  service: string;
  namespace?: string;
  serviceAccount?: string;
  trustDomain: string;
}

/** --service/--namespace/--service-account/--trust-domain as the proxy's Marathon id and identity (exit 2 when invalid). */
export function proxyIdentityFromFlags(o: ProxyIdentityFlags): { marathonId: string; identity: WorkloadIdentity } {
  const problem =
    (o.namespace !== undefined ? prefixed('--namespace', checkNamespace(o.namespace)) : undefined) ??
    (o.serviceAccount !== undefined ? prefixed('--service-account', checkServiceAccount(o.serviceAccount)) : undefined);
  if (problem) throw new UserError(problem);
  const trustDomain = trustDomainFromFlags(o);
  try {
    const marathonId = absoluteMarathonId(o.service);
    return { marathonId, identity: proxyIdentityOf(marathonId, trustDomain, { namespace: o.namespace, serviceAccount: o.serviceAccount }) };
  } catch (err) {
    throw new UserError(`--service: ${(err as Error).message}`);
  }
}

const prefixed = (flag: string, problem: string | undefined) => (problem ? `${flag}: ${problem}` : undefined);

/** --instance-ip and --instance-id go into node.id, whose parts are separated by `~`. */
export function checkNodeIdPart(value: string | undefined, flag: string): string | undefined {
  if (value !== undefined && !/^[A-Za-z0-9_.:\-]+$/.test(value)) throw new UserError(`${flag}: "${value}" may hold only letters, digits and . _ : -`);
  return value;
}

export function addProxyIdentityOptions(cmd: Command): Command {
  cmd
    .requiredOption('--service <marathon-id>', 'the Marathon app or pod id the proxy belongs to (/prod/payments/api)')
    .option('--namespace <ns>', 'identity namespace (default: the first segment of the id, or default)')
    .option('--service-account <sa>', 'identity service account (default: default)');
  return addTrustDomainOption(cmd)
    .option('--instance-ip <ip>', 'instance IP in the default node id (default 127.0.0.1)')
    .option('--instance-id <id>', 'instance id in the default node id (default: the id as a Mesos task name)')
    .option('-o, --output <file>', 'write to this file instead of stdout');
}

/** A directory flag as the proxy sees it: absolute, so the bootstrap means the same wherever the proxy starts. */
export function absoluteDir(dir: string, flag: string): string {
  if (!dir.startsWith('/')) throw new UserError(`${flag}: "${dir}" must be an absolute path`);
  return dir;
}

/** Prints `text`, or writes it to --output. */
export async function writeOutput(text: string, output: string | undefined): Promise<void> {
  if (output === undefined) process.stdout.write(text);
  else await writeFileAtomic(output, text, 0o644);
}

export function parsePort(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new UserError(`${flag}: "${text}" is not a port (1-65535)`);
  return n;
}

interface EnvoyBootstrapFlags extends ProxyIdentityFlags {
  mode: CertMode;
  capture: CaptureMode;
  xdsAddress: string;
  adminPort: string;
  certsDir: string;
  socketDir: string;
  instanceIp?: string;
  instanceId?: string;
  output?: string;
}

export const registerEnvoyBootstrap: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('envoy-bootstrap')
    .description("print an Envoy sidecar's v3 bootstrap (YAML): node identity, admin, the sds-grpc and xds-grpc clusters, ADS");
  addProxyIdentityOptions(cmd)
    .addOption(new Option('--mode <mode>', 'how the sidecar gets certificates: sds (agent socket) or files (/etc/certs)').choices([...CERT_MODES]).default('sds'))
    .addOption(new Option('--capture <mode>', 'traffic capture the sidecar is set up for').choices([...CAPTURE_MODES]).default('explicit'))
    .option('--xds-address <host:port>', 'files mode: the xDS server', DEFAULT_XDS_ADDRESS)
    .option('--admin-port <port>', 'admin listener port on 127.0.0.1', String(DEFAULT_ADMIN_PORT))
    .option('--certs-dir <dir>', "files mode: where the sidecar sees its identity's cert-chain.pem, key.pem and root-cert.pem", CERTS_MOUNT_PATH)
    .option('--socket-dir <dir>', "sds mode: where the sidecar sees its identity's SDS `socket` and `xds` socket (the agent's <sds-dir>/<ns>/<sa>)", SDS_MOUNT_PATH)
    .action(async (o: EnvoyBootstrapFlags) => {
      const { marathonId, identity } = proxyIdentityFromFlags(o);
      let xdsAddress;
      try {
        xdsAddress = parseHostPort(o.xdsAddress, '--xds-address');
      } catch (err) {
        throw new UserError((err as Error).message);
      }
      const yaml = envoyBootstrapYaml({
        identity, marathonId, certMode: o.mode, capture: o.capture, xdsAddress,
        adminPort: parsePort(o.adminPort, '--admin-port'), certsDir: absoluteDir(o.certsDir, '--certs-dir'), socketDir: absoluteDir(o.socketDir, '--socket-dir'),
        instanceIp: checkNodeIdPart(o.instanceIp, '--instance-ip'), instanceId: checkNodeIdPart(o.instanceId, '--instance-id'),
      });
      await writeOutput(yaml, o.output);
    });
};
