/** The one PEM helper: encode DER as PEM blocks and decode them back. */

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** A PEM text without the one block asked for; the message says which and how many. */
export class PemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PemError';
  }
}

export interface PemBlock {
  label: string;
  der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n\t ]*?)-----END \1-----/g;

/** Every PEM block in the text, in order. */
export function parsePemBlocks(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) out.push({ label: m[1], der: Buffer.from(m[2].replace(/\s+/g, ''), 'base64') });
  return out;
}

/** The DER of the single block with this label; throws a clear error when absent or ambiguous. */
export function fromPem(text: string, label: string, what = label): Buffer {
  const blocks = parsePemBlocks(text).filter((b) => b.label === label);
  if (blocks.length === 0) throw new PemError(`${what}: no "${label}" PEM block found`);
  if (blocks.length > 1) throw new PemError(`${what}: expected one "${label}" PEM block, found ${blocks.length}`);
  return blocks[0].der;
}

/** Splits concatenated certificate PEMs (a chain file) into one PEM string each. */
export function splitCertificates(text: string): string[] {
  return parsePemBlocks(text)
    .filter((b) => b.label === 'CERTIFICATE')
    .map((b) => toPem('CERTIFICATE', b.der));
}
