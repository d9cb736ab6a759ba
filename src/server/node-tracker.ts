/**
 * What `citadel node list` shows: each node's latest node certificate and when a replica last
 * heard from it. A contact is written at most once a minute per node and replica; a new node
 * certificate at once. Writes are best effort: a store outage loses a last-contact time, never a call.
 */
import type { Logger } from '../common/log';
import { errorMessage } from '../common/errors';
import type { NodeRecord, Store } from '../store/store';

export interface NodeCertificate {
  serialHex: string;
  /** When it was issued: notBefore plus the CA's clock skew. */
  issuedAt: Date;
  notAfter: Date;
}

export class NodeTracker {
  /** host -> what this replica last wrote, and when. */
  private readonly written = new Map<string, { record: NodeRecord; at: number }>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly minIntervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A node certificate was issued to `host` (attestation or renewal). */
  issued(host: string, cert: NodeCertificate): void {
    this.write(host, cert, true);
  }

  /** `host` called, presenting `cert`. */
  contact(host: string, cert: NodeCertificate): void {
    this.write(host, cert, false);
  }

  private write(host: string, cert: NodeCertificate, force: boolean): void {
    const t = this.now();
    const last = this.written.get(host);
    // An older certificate still in use (a renewal under way) does not replace the newer one.
    const newer = !last || cert.issuedAt.getTime() > Date.parse(last.record.issuedAt);
    if (!force && !newer && t - last!.at < this.minIntervalMs) return;
    const base = newer ? cert : undefined;
    const record: NodeRecord = {
      host,
      serialNumber: base ? base.serialHex : last!.record.serialNumber,
      issuedAt: base ? base.issuedAt.toISOString() : last!.record.issuedAt,
      notAfter: base ? base.notAfter.toISOString() : last!.record.notAfter,
      lastContact: new Date(t).toISOString(),
    };
    this.written.set(host, { record, at: t });
    this.store.putNodeRecord(record).catch((err) => this.log.debug('cannot record a node contact', { host, error: errorMessage(err) }));
  }
}
