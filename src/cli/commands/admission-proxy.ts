import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { UserError } from '../../common/errors';
import { AdmissionProxy } from '../../inject/admission-proxy';
import { injectConfig, parseInjectConfigFile, type InjectConfigFile } from '../../inject/config';
import { IdentityDirectories } from '../../inject/identity-mounts';
import { NamespaceMap, parseNamespaceMapFile } from '../../inject/namespace-map';
import { parseSidecarTemplate } from '../../inject/template';
import { marathonClientOptionsFromFlags } from '../../marathon/flags';
import { CAPTURE_MODES, CERT_MODES, DEFAULT_CERTS_DIR, DEFAULT_SDS_DIR, DEFAULT_XDS_ADDRESS, type CaptureMode, type CertMode } from '../../mesh/bootstrap/contract';
import { parseHostPort, type HostPort } from '../../mesh/bootstrap/host-port';
import { addLogOptions, addTrustDomainOption, loggerFromFlags, trustDomainFromFlags } from '../options';
import type { RegisterCommand } from './index';
import { overridesFromFlags, readInput, userError } from './inject';

interface AdmissionProxyFlags {
  marathon: string;
  marathonCaFile?: string;
  listen: string;
  injectConfig?: string;
  template?: string;
  convertApps?: boolean;
  namespaceMap?: string;
  mode?: CertMode;
  capture?: CaptureMode;
  sdsDir?: string;
  certsDir?: string;
  xdsAddress?: string;
  trustDomain?: string;
  logFormat?: string;
  logLevel?: string;
}

/** `host:port` to listen on; port 0 picks a free one (tests). */
function listenAddress(text: string): HostPort {
  const zero = /^(.*):0$/.exec(text);
  const parsed = userError(() => parseHostPort(zero ? `${zero[1]}:1` : text, '--listen'));
  return zero ? { ...parsed, port: 0 } : parsed;
}

/** The one Marathon the proxy forwards to, checked as every command checks --marathon; no credentials in it. */
function marathonUrl(o: AdmissionProxyFlags): { url: string; ca?: Buffer } {
  if (o.marathon.includes(',')) throw new UserError('--marathon: the admission proxy forwards to one Marathon URL; give the leader, or a load balancer in front of the Marathons (e.g. http://marathon.mesos:8080)');
  const client = marathonClientOptionsFromFlags({ marathon: [o.marathon], marathonCaFile: o.marathonCaFile });
  const url = new URL(client.urls[0]);
  if (url.username || url.password) throw new UserError('--marathon: the URL must not carry user:password; the proxy forwards each client\'s own credentials to Marathon');
  return { url: client.urls[0], ...(client.caFile ? { ca: readFileSync(client.caFile) } : {}) };
}

export const registerAdmissionProxy: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('admission-proxy')
    .description('a reverse proxy in front of Marathon that injects the Envoy sidecar into pods posted through it and refuses definitions that mount another identity\'s certificates or claim a namespace their path may not use')
    .option('--marathon <url>', 'the Marathon to forward to (a leader, or a load balancer in front of the Marathons), with any path prefix such as /service/marathon', 'http://127.0.0.1:8080')
    .option('--marathon-ca-file <file>', 'PEM CA bundle to trust for an https Marathon URL')
    .option('--listen <host:port>', 'address to serve on', '127.0.0.1:8081')
    .option('--inject-config <file>', 'per-namespace injection settings (JSON, or YAML with the yaml package)')
    .option('--template <file>', 'the sidecar template (JSON; default: the one shipped)')
    .option('--convert-apps', 'send an app that opts in to injection to /v2/pods as the pod it converts into (without it, such an app is refused with 422)')
    .option('--namespace-map <file>', 'JSON or YAML: Marathon path prefix -> the namespaces (and service accounts) its workloads may claim with istio.io/* labels (default: only the namespace the path implies)')
    .addOption(new Option('--mode <mode>', 'how sidecars get certificates: sds (agent socket) or files (/etc/certs) (default: the inject config, else sds)').choices([...CERT_MODES]))
    .addOption(new Option('--capture <mode>', 'traffic capture when the label citadel.io/capture says nothing (default: the inject config, else explicit)').choices([...CAPTURE_MODES]))
    .option('--sds-dir <dir>', `the node agent's SDS directory on the Mesos agents (default ${DEFAULT_SDS_DIR})`)
    .option('--certs-dir <dir>', `the node agent's certificate directory on the Mesos agents (default ${DEFAULT_CERTS_DIR})`)
    .option('--xds-address <host:port>', `files mode: the xDS server the sidecars dial (default ${DEFAULT_XDS_ADDRESS})`);
  addLogOptions(addTrustDomainOption(cmd, { defaultFrom: 'the inject config' })).action(async (o: AdmissionProxyFlags) => {
    const trustDomain = trustDomainFromFlags(o);
    const { url, ca } = marathonUrl(o);
    const listen = listenAddress(o.listen);
    const file: InjectConfigFile | undefined = o.injectConfig
      ? userError(() => parseInjectConfigFile(readInput(o.injectConfig!, 'inject config'), o.injectConfig!))
      : undefined;
    const template = o.template ? userError(() => parseSidecarTemplate(readInput(o.template!, 'template'), o.template!)) : undefined;
    const overrides = overridesFromFlags(o);
    const config = userError(() => injectConfig({ file, overrides, trustDomain, template }));
    const namespaces = o.namespaceMap ? userError(() => parseNamespaceMapFile(readInput(o.namespaceMap!, 'namespace map'), o.namespaceMap!)) : new NamespaceMap();
    // every directory a node agent may serve identities from is guarded, not only the one injection mounts
    const dirs = [config.defaults, ...Object.values(config.namespaces), config.overrides].flatMap((s) => [s.sdsDir, s.certsDir]).filter((d): d is string => d !== undefined);
    const logger = loggerFromFlags(o);
    const proxy = new AdmissionProxy({
      marathon: url,
      ca,
      policy: { inject: config, convertApps: o.convertApps === true, directories: new IdentityDirectories(dirs), namespaces },
      logger,
    });
    let at: string;
    try {
      at = await proxy.listen(listen.port, listen.host);
    } catch (err) {
      throw new UserError(`--listen ${o.listen}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    process.stdout.write(`admission-proxy listening on ${at} -> ${url}\n`);
    logger.info('admission proxy started', { listen: at, marathon: url, convertApps: o.convertApps === true, guardedDirectories: new IdentityDirectories(dirs).dirs });
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await proxy.close();
  });
};
