/** `cfssl serve` (Debian golang-cfssl) as the comparison signer, with our root as its CA. */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import path from 'node:path';

export interface CfsslServer {
  pid: number;
  /** POST /api/v1/cfssl/sign over a keep-alive connection; rejects on cfssl's errors. */
  sign(csrPem: string): Promise<void>;
  stop(): void;
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Starts `cfssl serve` in `dir` and waits until it signs. It logs errors only (`-loglevel 4`):
 * its per-request info lines would cost it CPU that a comparison should not charge it.
 */
export async function startCfssl(dir: string, caCertPem: string, caKeyPem: string, callers: number, probeCsr: string): Promise<CfsslServer> {
  writeFileSync(path.join(dir, 'ca.pem'), caCertPem);
  writeFileSync(path.join(dir, 'ca-key.pem'), caKeyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'cfssl.json'), JSON.stringify({ signing: { default: { expiry: '1h', usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'] } } }));
  const port = await freePort();
  const child = spawn('cfssl', ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', path.join(dir, 'ca.pem'), '-ca-key', path.join(dir, 'ca-key.pem'), '-config', path.join(dir, 'cfssl.json'), '-loglevel', '4'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const agent = new http.Agent({ keepAlive: true, maxSockets: callers });
  const sign = (csr: string) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({ certificate_request: csr });
      const req = http.request({ host: '127.0.0.1', port, path: '/api/v1/cfssl/sign', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d) => (text += d));
        res.on('end', () => {
          const parsed = JSON.parse(text) as { success: boolean; errors: unknown[] };
          if (!parsed.success) reject(new Error(`cfssl: ${JSON.stringify(parsed.errors)}`));
          else resolve();
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  const stop = () => {
    agent.destroy();
    child.kill('SIGTERM');
  };
  for (let i = 0; ; i++) {
    try {
      await sign(probeCsr);
      break;
    } catch (err) {
      if (i > 100) {
        stop();
        throw new Error(`cfssl serve did not come up: ${(err as Error).message} ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { pid: child.pid!, sign, stop };
}
