/** The command-line flags that point a command at Marathon, and the client options they make. */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../common/errors';
import type { MarathonClientOptions } from './client';

export interface MarathonFlagValues {
  marathon: string[];
  marathonUser?: string;
  marathonPasswordFile?: string;
  marathonTokenFile?: string;
  marathonCaFile?: string;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(',').filter((v) => v.length > 0)];

/** Adds --marathon (repeatable, or comma-separated for HA) and its authentication flags. */
export function addMarathonOptions(cmd: Command): Command {
  return cmd
    .option('--marathon <url>', 'Marathon base URL; repeat (or separate with commas) to list HA instances, tried in turn; may carry user:password@ and a path prefix such as /service/marathon', collect)
    .option('--marathon-user <name>', 'HTTP basic auth user (Marathon --http_credentials)')
    .option('--marathon-password-file <file>', 'file holding the basic auth password')
    .option('--marathon-token-file <file>', 'DC/OS: file holding the token sent as "Authorization: token=<JWT>" (re-read when it changes)')
    .option('--marathon-ca-file <file>', 'PEM CA bundle to trust for https Marathon URLs');
}

/** Client options from the flags; one-line UserError for what a person got wrong. */
export function marathonClientOptionsFromFlags(f: MarathonFlagValues, defaults: string[] = ['http://127.0.0.1:8080']): MarathonClientOptions {
  const urls = f.marathon && f.marathon.length > 0 ? f.marathon : defaults;
  for (const u of urls) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new UserError(`--marathon: "${u}" is not a URL; write it like http://marathon.mesos:8080`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UserError(`--marathon: "${u}" must be http:// or https://`);
  }
  const read = (file: string, flag: string) => {
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new UserError(`${flag}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  };
  if (f.marathonPasswordFile && f.marathonUser === undefined) throw new UserError('--marathon-password-file needs --marathon-user');
  if (f.marathonTokenFile) read(f.marathonTokenFile, '--marathon-token-file');
  if (f.marathonCaFile) read(f.marathonCaFile, '--marathon-ca-file');
  return {
    urls,
    ...(f.marathonUser !== undefined ? { username: f.marathonUser, password: f.marathonPasswordFile ? read(f.marathonPasswordFile, '--marathon-password-file') : '' } : {}),
    ...(f.marathonTokenFile ? { tokenFile: f.marathonTokenFile } : {}),
    ...(f.marathonCaFile ? { caFile: f.marathonCaFile } : {}),
  };
}
