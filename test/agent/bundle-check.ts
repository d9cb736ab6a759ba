import { promises as fs } from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { checkBundle } from '../../src/pki/bundle';
import { workloadIdentity } from '../../src/pki/identity';

/**
 * What a sidecar mounting `<dir>/<ns>/<sa>` would find wrong, by the one bundle check; [] when the
 * bundle is whole and right, and the Envoy SDS files beside it (what a files-mode bootstrap's
 * xDS connection reads) hold the very same certificate, key and root.
 */
export async function bundleProblems(certsDir: string, ns: string, sa: string, rootPem: string, td = 'cluster.local'): Promise<string[]> {
  const dir = path.join(certsDir, ns, sa);
  let chain: string, key: string, root: string, sdsCert: string, sdsRoot: string;
  try {
    [chain, key, root, sdsCert, sdsRoot] = await Promise.all(['cert-chain.pem', 'key.pem', 'root-cert.pem', 'envoy-sds-cert.json', 'envoy-sds-root.json'].map((f) => fs.readFile(path.join(dir, f), 'utf8')));
  } catch (err) {
    return [`${ns}/${sa}: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  if (root !== rootPem) problems.push(`${ns}/${sa}: root-cert.pem is not the CA root`);
  const secret = (text: string) => (JSON.parse(text) as { resources: Array<{ tls_certificate?: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } }; validation_context?: { trusted_ca: { inline_string: string } } }> }).resources[0];
  const c = secret(sdsCert).tls_certificate;
  if (c?.certificate_chain.inline_string !== chain || c?.private_key.inline_string !== key) problems.push(`${ns}/${sa}: envoy-sds-cert.json is not cert-chain.pem and key.pem`);
  if (secret(sdsRoot).validation_context?.trusted_ca.inline_string !== root) problems.push(`${ns}/${sa}: envoy-sds-root.json is not root-cert.pem`);
  const check = checkBundle({ certChainPem: chain, keyPem: key, rootCertPem: root }, { trustedRootPem: rootPem, expected: workloadIdentity(td, ns, sa), keyLabel: 'key.pem' });
  return [...problems, ...check.problems.map((p) => `${ns}/${sa}: ${p}`)];
}

/** What a sidecar loads from its identity directory: key, certificate chain, the roots it trusts. */
export interface TlsFiles {
  key: string;
  cert: string;
  ca: string;
}

export async function tlsFilesOf(certsDir: string, ns: string, sa: string): Promise<TlsFiles> {
  const read = (f: string) => fs.readFile(path.join(certsDir, ns, sa, f), 'utf8');
  return { key: await read('key.pem'), cert: await read('cert-chain.pem'), ca: await read('root-cert.pem') };
}

/** A real mutual-TLS handshake (node:tls, OpenSSL) between two sidecars' files; rejects when either side refuses the other. */
export function mtlsHandshake(server: TlsFiles, client: TlsFiles): Promise<{ serverSawClient: string; clientSawServer: string }> {
  return new Promise((resolve, reject) => {
    let serverSawClient = '';
    const srv = tls.createServer({ ...server, requestCert: true, rejectUnauthorized: true }, (sock) => {
      serverSawClient = sock.getPeerCertificate().subjectaltname ?? '';
      sock.end('ok');
    });
    srv.on('tlsClientError', (err) => {
      srv.close();
      reject(err);
    });
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      const c = tls.connect({ host: '127.0.0.1', port, ...client, checkServerIdentity: () => undefined }, () => {
        const clientSawServer = c.getPeerCertificate().subjectaltname ?? '';
        c.on('data', () => {
          c.end();
          srv.close();
          resolve({ serverSawClient, clientSawServer });
        });
      });
      c.on('error', (err) => {
        srv.close();
        reject(err);
      });
    });
  });
}
