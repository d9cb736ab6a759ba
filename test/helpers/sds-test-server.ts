/**
 * A minimal state-of-the-world SDS server for tests that run a real Envoy: gRPC by hand over
 * node:http2 (h2c on a Unix socket, as the node agent serves it), Envoy's protos via protobufjs.
 * One identity per socket: `default` is its certificate and key, `ROOTCA` its root. Each stream
 * gets the one secret it asks for, and again whenever update() changes it.
 *
 *   const sds = await SdsTestServer.start(path.join(dir, 'sds.sock'), bundle);
 *   ... bootstrap with cluster sds-grpc at sds.socketPath ...
 *   await sds.close();
 */
import { rmSync } from 'node:fs';
import http2 from 'node:http2';
import { SDS_CERT_SECRET, SDS_CLUSTER, SDS_ROOT_SECRET } from '../../src/mesh/bootstrap/contract';
import { encodeEnvoyMessage, envoyProtoRoot } from './envoy-proto';

export interface SdsIdentity {
  certChainPem: string;
  keyPem: string;
  rootCertPem: string;
}

/** What Envoy sent, as the tests read it. */
export interface SdsRequest {
  names: string[];
  versionInfo: string;
  responseNonce: string;
  nodeId?: string;
  error?: string;
}

const METHOD = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';
const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

interface Stream {
  name?: string;
  send(name: string): void;
}

export class SdsTestServer {
  readonly requests: SdsRequest[] = [];
  private readonly streams = new Set<Stream>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private version = 0;

  private constructor(
    readonly socketPath: string,
    private identity: SdsIdentity,
    private readonly server: http2.Http2Server,
  ) {}

  static async start(socketPath: string, identity: SdsIdentity): Promise<SdsTestServer> {
    rmSync(socketPath, { force: true });
    const server = http2.createServer();
    const sds = new SdsTestServer(socketPath, identity, server);
    server.on('stream', (stream, headers) => sds.serve(stream, headers));
    server.on('session', (session) => {
      sds.sessions.add(session);
      session.on('close', () => sds.sessions.delete(session));
      session.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    return sds;
  }

  /** A new identity (rotation, another root): pushed to every stream watching a secret that changed. */
  update(identity: SdsIdentity): void {
    const old = this.identity;
    this.identity = identity;
    for (const s of this.streams) {
      if (s.name === SDS_CERT_SECRET && (old.certChainPem !== identity.certChainPem || old.keyPem !== identity.keyPem)) s.send(s.name);
      if (s.name === SDS_ROOT_SECRET && old.rootCertPem !== identity.rootCertPem) s.send(s.name);
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // A running Envoy keeps its connection open; closing the server alone would wait for it.
      for (const session of this.sessions) session.destroy();
    });
    rmSync(this.socketPath, { force: true });
  }

  private serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    if (headers[':path'] !== METHOD) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'unimplemented' }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.on('error', () => undefined);
    const root = envoyProtoRoot();
    const Request = root.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
    const Response = root.lookupType('envoy.service.discovery.v3.DiscoveryResponse');
    const s: Stream = {
      send: (name) => {
        this.version++;
        const secret = this.secret(name);
        const response = Response.encode(
          Response.fromObject({
            version_info: String(this.version),
            type_url: SECRET_TYPE,
            nonce: `n${this.version}`,
            resources: secret === undefined ? [] : [{ type_url: SECRET_TYPE, value: encodeEnvoyMessage('envoy.extensions.transport_sockets.tls.v3.Secret', secret) }],
          }),
        ).finish();
        if (!stream.closed && !stream.destroyed) stream.write(frame(response));
      },
    };
    this.streams.add(s);
    stream.on('close', () => {
      this.streams.delete(s);
    });
    stream.on(
      'data',
      deframer((message) => {
        const req = Request.toObject(Request.decode(message), { longs: String, enums: String }) as {
          resource_names?: string[];
          version_info?: string;
          response_nonce?: string;
          node?: { id?: string };
          error_detail?: { message?: string };
        };
        const names = req.resource_names ?? [];
        this.requests.push({
          names,
          versionInfo: req.version_info ?? '',
          responseNonce: req.response_nonce ?? '',
          ...(req.node?.id !== undefined && { nodeId: req.node.id }),
          ...(req.error_detail && { error: req.error_detail.message ?? '' }),
        });
        if (s.name === undefined && names.length > 0) {
          s.name = names[0];
          s.send(s.name);
        }
      }),
    );
  }

  private secret(name: string): object | undefined {
    if (name === SDS_CERT_SECRET) {
      return { name, tls_certificate: { certificate_chain: { inline_string: this.identity.certChainPem }, private_key: { inline_string: this.identity.keyPem } } };
    }
    if (name === SDS_ROOT_SECRET) return { name, validation_context: { trusted_ca: { inline_string: this.identity.rootCertPem } } };
    return undefined;
  }
}

/** The `sds-grpc` cluster of a test bootstrap: HTTP/2 to the server's socket. */
export function sdsClusterFor(socketPath: string): Record<string, unknown> {
  return {
    name: SDS_CLUSTER,
    type: 'STATIC',
    connect_timeout: '1s',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: { cluster_name: SDS_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: socketPath } } } }] }] },
  };
}

function frame(payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Splits a byte stream into gRPC messages. */
function deframer(onMessage: (message: Buffer) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      onMessage(buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
    }
  };
}
