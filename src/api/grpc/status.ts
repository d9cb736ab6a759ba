import { status } from '@grpc/grpc-js';

export { status };

/** A refusal with its gRPC status; the message is one line for the caller. */
export class GrpcError extends Error {
  constructor(readonly code: status, message: string) {
    super(message);
    this.name = 'GrpcError';
  }
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md): printable ASCII except '%' passes through. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The `grpc-timeout` header (`100m`, `5S`, at most 8 digits) in milliseconds, or undefined when absent or malformed. */
export function parseGrpcTimeout(header: string | string[] | undefined): number | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(header);
  return m ? Number(m[1]) * TIMEOUT_UNITS[m[2]] : undefined;
}
