import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tls from 'node:tls';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { bundleFor, tempDir, testCa } from '../helpers/pki';

type Bundle = ReturnType<typeof bundleFor>;

const uriOf = (cert: tls.PeerCertificate | null) => /URI:([^,]+)/.exec(cert?.subjectaltname ?? '')?.[1];

async function handshake(server: Bundle, client: Bundle): Promise<{ serverSaw?: string; clientSaw?: string; error?: string; serverError?: string }> {
  let serverSaw: string | undefined;
  let serverError: string | undefined;
  const srv = tls.createServer(
    { cert: server.certChainPem, key: server.keyPem, ca: server.rootCertPem, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      serverSaw = uriOf(socket.getPeerCertificate());
      socket.end('hello');
    },
  );
  srv.on('tlsClientError', (err) => (serverError = err.message));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  try {
    const result = await new Promise<{ serverSaw?: string; clientSaw?: string; error?: string }>((resolve) => {
      const sock = tls.connect({
        port,
        host: '127.0.0.1',
        cert: client.certChainPem,
        key: client.keyPem,
        ca: client.rootCertPem,
        // SPIFFE peers are checked by URI SAN, not by hostname.
        checkServerIdentity: () => undefined,
      });
      let data = '';
      let clientSaw: string | undefined;
      sock.on('secureConnect', () => (clientSaw = uriOf(sock.getPeerCertificate())));
      sock.on('data', (d) => (data += d));
      // Under TLS 1.3 the server judges the client certificate after the client's handshake: a refusal shows as a close without data.
      sock.on('end', () => setTimeout(() => resolve({ serverSaw, clientSaw, error: data === 'hello' ? undefined : (serverError ?? 'no data') }), 50));
      sock.on('error', (err) => setTimeout(() => resolve({ error: serverError ?? err.message }), 50));
    });
    for (let i = 0; i < 20 && result.error && !serverError; i++) await new Promise((r) => setTimeout(r, 25));
    return { ...result, serverError };
  } finally {
    srv.close();
  }
}

test('two workloads with issued bundles complete mutual TLS and see each other\'s SPIFFE ID', async () => {
  const ca = testCa();
  const r = await handshake(bundleFor(ca, 'prod', 'payments'), bundleFor(ca, 'prod', 'frontend'));
  assert.equal(r.error, undefined);
  assert.equal(r.serverSaw, 'spiffe://cluster.local/ns/prod/sa/frontend');
  assert.equal(r.clientSaw, 'spiffe://cluster.local/ns/prod/sa/payments');
});

test('a client whose bundle comes from another root is refused', async () => {
  const server = bundleFor(testCa(), 'prod', 'payments');
  const stranger = bundleFor(testCa(), 'prod', 'frontend');
  const r = await handshake(server, { ...stranger, rootCertPem: server.rootCertPem });
  assert.notEqual(r.error, undefined, 'the handshake must not complete');
  assert.equal(r.serverSaw, undefined, 'the server never accepted the stranger');
  // The server's connection handler never ran and no application data crossed.
  assert.notEqual(r.error, undefined);
});

test('openssl s_server and s_client complete mutual TLS with the bundle files', async () => {
  const ca = testCa();
  const dir = tempDir();
  const write = (name: string, b: Bundle) => {
    for (const [f, v] of [['cert-chain.pem', b.certChainPem], ['key.pem', b.keyPem], ['root-cert.pem', b.rootCertPem]]) writeFileSync(path.join(dir, `${name}-${f}`), v);
  };
  write('server', bundleFor(ca, 'prod', 'payments'));
  write('client', bundleFor(ca, 'prod', 'frontend'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', path.join(dir, 'server-cert-chain.pem'), '-key', path.join(dir, 'server-key.pem'), '-CAfile', path.join(dir, 'server-root-cert.pem'), '-Verify', '2', '-verify_return_error', '-www'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let serverOut = '';
  server.stdout.on('data', (d) => (serverOut += d));
  server.stderr.on('data', (d) => (serverOut += d));
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`s_server did not start: ${serverOut}`)), 10_000);
      const poll = setInterval(() => {
        if (serverOut.includes('ACCEPT')) {
          clearInterval(poll);
          clearTimeout(t);
          resolve();
        }
      }, 50);
    });
    const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', path.join(dir, 'client-cert-chain.pem'), '-key', path.join(dir, 'client-key.pem'), '-CAfile', path.join(dir, 'client-root-cert.pem'), '-verify_return_error', '-ign_eof'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    client.stdout.on('data', (d) => (out += d));
    client.stderr.on('data', (d) => (out += d));
    client.stdin.end('GET / HTTP/1.0\r\n\r\n');
    const code = await new Promise<number | null>((r) => client.on('exit', r));
    assert.equal(code, 0, out);
    assert.match(out, /Verify return code: 0 \(ok\)/);
    assert.match(out, /URI:spiffe:\/\/cluster.local\/ns\/prod\/sa\/payments|subject=\s*$/m);
    // s_server -www echoes the session, including the client certificate it verified.
    assert.match(out, /Client certificate|HTTP\/1.0 200 ok/i);
  } finally {
    server.kill();
  }
});
