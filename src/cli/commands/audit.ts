import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import { AuditLineError, AuditRecord, parseAuditLine } from '../../ca/audit-log';
import { parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import type { RegisterCommand } from './index';

export const DEFAULT_AUDIT_LOG = 'citadel-audit.log';

/** `--since`: a duration back from now (`1h`, `7d`) or a time (`2024-05-01T12:00:00Z`), in epoch ms. */
export function parseSince(text: string, now = Date.now()): number {
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const t = Date.parse(text);
    if (!Number.isFinite(t)) throw new UserError(`--since: "${text}" is not a time; write it like 2024-05-01T12:00:00Z`);
    return t;
  }
  return now - parseDuration(text, '--since');
}

function describe(r: AuditRecord): string {
  const who = `${r.caller}${r.node && !r.caller.includes(r.node) ? ` on ${r.node}` : ''}${r.peer ? ` from ${r.peer}` : ''}`;
  if (r.event === 'issued') return `${r.time}  issued   ${r.api.padEnd(17)} ${r.spiffeId}  serial ${r.serial}  until ${r.notAfter}  to ${who}`;
  return `${r.time}  refused  ${r.api.padEnd(17)} ${r.code} to ${who}: ${r.reason}`;
}

export const registerAudit: RegisterCommand = (program: Command) => {
  program
    .command('audit')
    .description('show the issuance audit log written by `citadel server --audit-log`: certificates issued and refusals')
    .option('--file <file>', 'the audit log', DEFAULT_AUDIT_LOG)
    .option('--since <duration|time>', 'only entries since then: a duration back from now (1h, 7d) or an ISO time')
    .option('--identity <spiffe-id>', 'only entries about this identity: issued for it, or asked by it')
    .addOption(new Option('-o, --output <format>', 'text for people, json (the lines as written) for programs').choices(['text', 'json']).default('text'))
    .action(async (o: { file: string; since?: string; identity?: string; output: string }) => {
      const since = o.since !== undefined ? parseSince(o.since) : undefined;
      const input = createReadStream(o.file, { encoding: 'utf8' });
      const opened = new Promise<void>((resolve, reject) => {
        input.once('open', () => resolve());
        input.once('error', (err: NodeJS.ErrnoException) => reject(new UserError(`--file ${o.file}: cannot read (${err.code ?? err.message})`)));
      });
      await opened;
      let n = 0;
      let shown = 0;
      let bad = 0;
      for await (const line of createInterface({ input, crlfDelay: Infinity })) {
        n++;
        if (!line.trim()) continue;
        let r: AuditRecord;
        try {
          r = parseAuditLine(line);
        } catch (err) {
          if (!(err instanceof AuditLineError)) throw err;
          bad++;
          process.stderr.write(`citadel: warning: ${o.file} line ${n} is not an audit record (${err.message}); skipped\n`);
          continue;
        }
        if (since !== undefined && Date.parse(r.time) < since) continue;
        if (o.identity && r.caller !== o.identity && !(r.event === 'issued' && r.spiffeId === o.identity)) continue;
        shown++;
        process.stdout.write((o.output === 'json' ? JSON.stringify(r) : describe(r)) + '\n');
      }
      if (o.output === 'text') process.stderr.write(`${shown} of ${n - bad} entries in ${o.file}\n`);
    });
};
