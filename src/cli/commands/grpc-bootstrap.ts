import { Command } from 'commander';
import { UserError } from '../../common/errors';
import { CERTS_MOUNT_PATH, DEFAULT_GRPC_REFRESH_INTERVAL, SDS_MOUNT_PATH } from '../../mesh/bootstrap/contract';
import { grpcBootstrap } from '../../mesh/bootstrap/grpc';
import { absoluteDir, addProxyIdentityOptions, checkNodeIdPart, proxyIdentityFromFlags, writeOutput, type ProxyIdentityFlags } from './envoy-bootstrap';
import type { RegisterCommand } from './index';

interface GrpcBootstrapFlags extends ProxyIdentityFlags {
  certsDir: string;
  socketDir: string;
  refreshInterval: string;
  instanceIp?: string;
  instanceId?: string;
  output?: string;
}

export const registerGrpcBootstrap: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('grpc-bootstrap')
    .description('print the xDS bootstrap (JSON) of a proxyless gRPC service for GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG');
  addProxyIdentityOptions(cmd)
    .option('--certs-dir <dir>', "where the service sees its identity's cert-chain.pem, key.pem and root-cert.pem", CERTS_MOUNT_PATH)
    .option('--socket-dir <dir>', "where the service sees its identity's `xds` socket (the agent's <sds-dir>/<ns>/<sa>)", SDS_MOUNT_PATH)
    .option('--refresh-interval <duration>', 'how often grpc-js re-reads the certificate files (e.g. 10s)', DEFAULT_GRPC_REFRESH_INTERVAL)
    .action(async (o: GrpcBootstrapFlags) => {
      const { marathonId, identity } = proxyIdentityFromFlags(o);
      if (!/^\d+(\.\d+)?s$/.test(o.refreshInterval)) throw new UserError(`--refresh-interval: "${o.refreshInterval}" is not a duration in seconds (e.g. 10s)`);
      const bootstrap = grpcBootstrap({
        identity, marathonId, certsDir: absoluteDir(o.certsDir, '--certs-dir'), socketDir: absoluteDir(o.socketDir, '--socket-dir'), refreshInterval: o.refreshInterval,
        instanceIp: checkNodeIdPart(o.instanceIp, '--instance-ip'), instanceId: checkNodeIdPart(o.instanceId, '--instance-id'),
      });
      await writeOutput(JSON.stringify(bootstrap, null, 2) + '\n', o.output);
    });
};
