/** The echo service the gRPC scenario's child processes speak: JSON messages, no .proto. */
import type { PeerCertificate } from 'node:tls';
import type { ServiceDefinition } from '@grpc/grpc-js';

export interface EchoReply {
  /** The caller's certificate as the server saw it; absent on a plaintext connection. */
  peer?: CertificateSeen;
  transportSecurityType?: string;
}

export interface CertificateSeen {
  uri?: string;
  /** Lower-case hex. */
  serial: string;
}

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString('utf8')),
};

export const ECHO_SERVICE: ServiceDefinition = {
  echo: {
    path: '/citadel.e2e.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

export function certificateSeen(cert: PeerCertificate | undefined): CertificateSeen | undefined {
  if (!cert || !cert.serialNumber) return undefined;
  return { serial: cert.serialNumber.toLowerCase(), uri: /URI:([^,\s]+)/.exec(cert.subjectaltname ?? '')?.[1] };
}
