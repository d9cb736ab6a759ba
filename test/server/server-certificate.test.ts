/**
 * The gRPC server's own certificate: renewed at half its lifetime; a renewal that fails (twice)
 * is logged and retried every minute from the timer, never thrown out of it, and the certificate
 * already in place keeps being served until a renewal succeeds.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import * as tls from 'node:tls';
import { afterEach, describe, it, mock } from 'node:test';
import { createLogger } from '../../src/common/log';
import { ServerCertificate, type ServerTls } from '../../src/server/server-certificate';
import { testCa } from '../helpers/pki';

const HOUR = 3_600_000;
const serial = (t: ServerTls) => new X509Certificate(t.cert).serialNumber;

/** The serial number of the certificate a TLS server presents. */
async function servedSerial(server: tls.Server, ca: string): Promise<string> {
  const { port } = server.address() as { port: number };
  const socket = tls.connect({ port, host: '127.0.0.1', ca, servername: 'istio-ca' });
  await once(socket, 'secureConnect');
  const s = socket.getPeerX509Certificate()!.serialNumber;
  socket.destroy();
  return s;
}

describe('gRPC server certificate renewal', () => {
  afterEach(() => mock.timers.reset());

  it('two failed renewals are logged and retried, never thrown; the old certificate keeps serving; the next try renews', async () => {
    // only the timers are mocked: the certificates carry real dates, so a real TLS client accepts them
    mock.timers.enable({ apis: ['setTimeout'] });
    const ca = testCa();
    const lines: Array<{ level: string; msg: string; error?: string; notAfter?: string }> = [];
    const logger = createLogger({ write: (l) => lines.push(JSON.parse(l)) });
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);

    const cert = new ServerCertificate(ca, ['127.0.0.1'], logger, 2 * HOUR);
    const first = cert.tls;
    const renewed: ServerTls[] = [];
    cert.onRenew((t) => renewed.push(t));
    const server = tls.createServer({ ...first }, (s) => s.end());
    cert.onRenew((t) => server.setSecureContext({ ...t }));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      // the CA cannot sign for the next two attempts (its store or key gone, say)
      const issue = ca.issue.bind(ca);
      let failures = 2;
      mock.method(ca, 'issue', (...args: Parameters<typeof ca.issue>) => {
        if (failures-- > 0) throw new Error('signing key unavailable');
        return issue(...args);
      });

      mock.timers.tick(HOUR); // half its lifetime: the first renewal, which fails
      mock.timers.tick(60_000); // the retry a minute later, which fails too
      const errors = lines.filter((l) => l.level === 'error');
      assert.equal(errors.length, 2, JSON.stringify(lines));
      for (const e of errors) {
        assert.equal(e.msg, 'cannot renew the gRPC server certificate; retrying in 1 minute');
        assert.equal(e.error, 'signing key unavailable');
        assert.equal(e.notAfter, cert.notAfter.toISOString());
      }
      assert.deepEqual(uncaught, []);
      assert.deepEqual(renewed, [], 'no listener was handed anything');
      assert.equal(serial(cert.tls), serial(first), 'the certificate in place stays');
      assert.equal(await servedSerial(server, ca.rootCertPem), serial(first), 'and is what the server presents');

      mock.timers.tick(60_000); // the third try succeeds
      assert.equal(renewed.length, 1);
      assert.notEqual(serial(renewed[0]), serial(first));
      assert.equal(serial(cert.tls), serial(renewed[0]));
      assert.equal(await servedSerial(server, ca.rootCertPem), serial(renewed[0]), 'the server presents the renewed one');
      assert.equal(lines.filter((l) => l.msg === 'gRPC server certificate issued').length, 2);

      mock.timers.tick(60_000); // and the retries stop: the next renewal is at half the new lifetime
      assert.equal(renewed.length, 1);
      assert.equal(lines.filter((l) => l.level === 'error').length, 2);
      assert.deepEqual(uncaught, []);
    } finally {
      cert.stop();
      process.off('uncaughtException', onUncaught);
      server.close();
    }
  });
});
