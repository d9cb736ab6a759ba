import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { UserError } from '../../common/errors';
import { injectConfig, parseInjectConfigFile, type InjectConfigFile, type SidecarSettings } from '../../inject/config';
import { jsonDiff } from '../../inject/diff';
import { inject, type InjectResult } from '../../inject/injector';
import { formatReport } from '../../inject/report';
import { parseSidecarTemplate } from '../../inject/template';
import { MarathonParseError } from '../../marathon/model';
import { CAPTURE_MODES, CERT_MODES, DEFAULT_CERTS_DIR, DEFAULT_SDS_DIR, DEFAULT_XDS_ADDRESS, type CaptureMode, type CertMode } from '../../mesh/bootstrap/contract';
import { parseHostPort } from '../../mesh/bootstrap/host-port';
import type { JsonValue } from '../../common/json';
import { addTrustDomainOption, trustDomainFromFlags } from '../options';
import { writeOutput } from './envoy-bootstrap';
import type { RegisterCommand } from './index';

interface InjectFlags {
  filename: string;
  output?: string;
  mode?: CertMode;
  capture?: CaptureMode;
  template?: string;
  injectConfig?: string;
  diff?: boolean;
  sdsDir?: string;
  certsDir?: string;
  xdsAddress?: string;
  trustDomain?: string;
}

/** A file's text, `-` being stdin; a missing file is the user's mistake (exit 2). */
export function readInput(file: string, what: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new UserError(`${what} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

/** Runs `f`; any error it throws becomes a UserError with the same one-line message. */
export function userError<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError((err as Error).message);
  }
}

/** The sidecar settings the flags set (they win over the inject config); shared with admission-proxy. */
export function overridesFromFlags(o: Pick<InjectFlags, 'mode' | 'capture' | 'sdsDir' | 'certsDir' | 'xdsAddress'>): Partial<SidecarSettings> {
  const out: Partial<SidecarSettings> = {};
  if (o.mode) out.certMode = o.mode;
  if (o.capture) out.capture = o.capture;
  for (const [flag, dir] of [['--sds-dir', o.sdsDir], ['--certs-dir', o.certsDir]] as const) {
    if (dir !== undefined && !dir.startsWith('/')) throw new UserError(`${flag}: "${dir}" must be an absolute path (the node agent's directory on the Mesos agent)`);
  }
  if (o.sdsDir) out.sdsDir = o.sdsDir;
  if (o.certsDir) out.certsDir = o.certsDir;
  if (o.xdsAddress) out.xdsAddress = userError(() => parseHostPort(o.xdsAddress!, '--xds-address'));
  return out;
}

/** `--- before` / `+++ after` and the changed leaves of every resource that changes. */
function formatDiffs(result: InjectResult): string {
  const blocks: string[] = [];
  for (const { report, before, after } of result.changes) {
    if (report.outcome === 'skipped') continue;
    const lines = jsonDiff(before, after);
    blocks.push([`--- ${report.id} (${report.kind})`, `+++ ${report.id} (pod, with sidecar)`, ...lines].join('\n'));
  }
  return blocks.length ? blocks.join('\n') + '\n' : '';
}

export const registerInject: RegisterCommand = (program: Command) => {
  const cmd = program
    .command('inject')
    .description('add the Envoy sidecar to Marathon pod, app (converted into a pod) or group definitions, like istioctl kube-inject')
    .requiredOption('-f, --filename <file>', 'the definition (JSON): a pod, an app, a group, or a list of them; - for stdin')
    .option('-o, --output <file>', 'write the result here instead of stdout')
    .addOption(new Option('--mode <mode>', 'how sidecars get certificates: sds (agent socket) or files (/etc/certs) (default: the inject config, else sds)').choices([...CERT_MODES]))
    .addOption(new Option('--capture <mode>', 'traffic capture when the label citadel.io/capture says nothing (default: the inject config, else explicit)').choices([...CAPTURE_MODES]))
    .option('--template <file>', 'the sidecar template (JSON; default: the one shipped, src/inject/templates/sidecar.json)')
    .option('--inject-config <file>', 'per-namespace injection settings (JSON, or YAML with the yaml package)')
    .option('--diff', 'print what would change instead of the result')
    .option('--sds-dir <dir>', `the node agent's SDS directory on the Mesos agent (default ${DEFAULT_SDS_DIR})`)
    .option('--certs-dir <dir>', `the node agent's certificate directory on the Mesos agent (default ${DEFAULT_CERTS_DIR})`)
    .option('--xds-address <host:port>', `files mode: the xDS server the sidecars dial (default ${DEFAULT_XDS_ADDRESS})`);
  addTrustDomainOption(cmd, { defaultFrom: 'the inject config' })
    .action(async (o: InjectFlags) => {
      const trustDomain = trustDomainFromFlags(o);
      const source = o.filename === '-' ? 'stdin' : o.filename;
      let definition: JsonValue;
      const text = readInput(o.filename, 'definition');
      try {
        definition = JSON.parse(text) as JsonValue;
      } catch (err) {
        throw new UserError(`${source}: not JSON (${(err as Error).message})`);
      }
      const template = o.template ? userError(() => parseSidecarTemplate(readInput(o.template!, 'template'), o.template!)) : undefined;
      const file: InjectConfigFile | undefined = o.injectConfig
        ? userError(() => parseInjectConfigFile(readInput(o.injectConfig!, 'inject config'), o.injectConfig!))
        : undefined;
      const config = userError(() => injectConfig({ file, overrides: overridesFromFlags(o), trustDomain, template }));
      let result: InjectResult;
      try {
        result = inject(definition, config);
      } catch (err) {
        if (err instanceof MarathonParseError) throw new UserError(`${source}: ${err.message}`);
        throw err;
      }
      for (const r of result.reports) process.stderr.write(formatReport(r) + '\n');
      if (o.diff) await writeOutput(formatDiffs(result), o.output);
      else await writeOutput(JSON.stringify(result.definition, null, 2) + '\n', o.output);
    });
};
