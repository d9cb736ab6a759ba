/**
 * The issuance audit log (`citadel server --audit-log FILE`): one JSON line per certificate issued
 * and per refusal, appended (O_APPEND) and made durable in batches: every line recorded while the
 * previous batch was being written and fsynced goes into the next write and fsync, so a burst of
 * issuance costs one fsync per batch, not per line. `citadel audit` reads it back.
 */
import * as fs from 'node:fs';
import { UserError, errorMessage } from '../common/errors';
import type { Logger } from '../common/log';

/** Which door a certificate went out of (or a node's feed was refused at). */
export type AuditApi = 'CreateCertificate' | 'HandleCSR' | 'AttestNode' | 'WatchSecrets' | 'WatchPlacements' | 'secret-controller';

interface AuditBase {
  api: AuditApi;
  /** Who asked: the caller's SPIFFE ID, `join-token:<hash prefix>`, or `secret-controller`. */
  caller: string;
  /** The Mesos agent involved: the calling node, or the one attesting. */
  node?: string;
  /** The remote address, for calls over the network. */
  peer?: string;
}

export interface IssuedEntry extends AuditBase {
  event: 'issued';
  spiffeId: string;
  serial: string;
  notAfter: string;
}

export interface RefusedEntry extends AuditBase {
  event: 'refused';
  /** The gRPC status name (PERMISSION_DENIED, INVALID_ARGUMENT, ...). */
  code: string;
  reason: string;
}

export type AuditEntry = IssuedEntry | RefusedEntry;
/** A line of the log: the entry and when it was recorded. */
export type AuditRecord = AuditEntry & { time: string };

/** Where issuers report; the server and the secret controller take one. */
export interface IssuanceAudit {
  record(entry: AuditEntry): void;
}

export const NO_AUDIT: IssuanceAudit = { record: () => {} };

/** A certificate time as the certificate holds it (whole seconds), for the log. */
export function certificateTime(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString();
}

export class AuditLog implements IssuanceAudit {
  private queue: string[] = [];
  private writing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly file: string,
    private readonly fd: number,
    private readonly log: Logger,
  ) {}

  /** Opens (creating, mode 0600) the file for appending; a one-line error if it cannot be. */
  static open(file: string, log: Logger): AuditLog {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    } catch (err) {
      throw new UserError(`--audit-log ${file}: cannot open for appending (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
    }
    return new AuditLog(file, fd, log);
  }

  record(entry: AuditEntry): void {
    if (this.closed) return;
    this.queue.push(JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n');
    this.writing ??= this.writeBatches();
  }

  /** Resolves once every line recorded so far is on disk. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    fs.closeSync(this.fd);
  }

  private async writeBatches(): Promise<void> {
    // Start after this turn of the event loop, so that its other issuances share the batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        const data = Buffer.from(batch.join(''));
        let off = 0;
        while (off < data.length) off += await new Promise<number>((resolve, reject) => fs.write(this.fd, data, off, data.length - off, null, (err, n) => (err ? reject(err) : resolve(n))));
        await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
      } catch (err) {
        this.log.error('cannot write the audit log; these entries are lost', { file: this.file, entries: batch.length, error: errorMessage(err) });
      }
    }
    this.writing = undefined;
  }
}

/** Thrown for a line that is not an audit record. */
export class AuditLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditLineError';
  }
}

const APIS: ReadonlySet<string> = new Set<AuditApi>(['CreateCertificate', 'HandleCSR', 'AttestNode', 'WatchSecrets', 'WatchPlacements', 'secret-controller']);

/** Parses one line of the log; AuditLineError for anything else (a torn last line after a crash, say). */
export function parseAuditLine(line: string): AuditRecord {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new AuditLineError('not JSON');
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new AuditLineError('not a JSON object');
  const r = v as Record<string, unknown>;
  const str = (k: string, optional = false): void => {
    if (r[k] === undefined && optional) return;
    if (typeof r[k] !== 'string') throw new AuditLineError(`no string "${k}"`);
  };
  str('time');
  if (!Number.isFinite(Date.parse(r.time as string))) throw new AuditLineError('"time" is not a time');
  str('api');
  if (!APIS.has(r.api as string)) throw new AuditLineError(`unknown api "${String(r.api)}"`);
  str('caller');
  str('node', true);
  str('peer', true);
  if (r.event === 'issued') ['spiffeId', 'serial', 'notAfter'].forEach((k) => str(k));
  else if (r.event === 'refused') ['code', 'reason'].forEach((k) => str(k));
  else throw new AuditLineError(`unknown event "${String(r.event)}"`);
  return r as unknown as AuditRecord;
}
