/**
 * SDS mode proven with real peers: `citadel agent` (a real process) serves two real Envoys whose
 * TLS certificates come only from its sockets: a client sidecar -> mTLS -> a server sidecar -> a
 * local HTTP backend. The backend learns the caller's SPIFFE ID; /certs shows the agent's
 * certificates; with a short --secret-ttl the certificates rotate under a steady stream of
 * requests with no restart and no failed request; a client from another root is refused.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import tls from 'node:tls';
import { after, before, it } from 'node:test';
import { SdsTestClient } from '../helpers/sds-client';
import { describeWithEnvoy, EnvoyProcess } from '../helpers/envoy';
import { bundleFor, tempDir, testCa } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { CaFixture, placeApp, startCaFixture, workload } from '../server/fixtures';
import { agentCredentials, CLIENT_ID, clientSidecar, envoySerials, normalSerial, SERVER_ID, serverSidecar, socketOf, startBackend, startSdsAgent, steadyRequests } from './sds-envoy-fixtures';
import type { SdsAgent } from './sds-envoy-fixtures';

const issued = async (f: CaFixture) => (await f.registry.getSingleMetric('citadel_server_success_cert_issuance_count')!.get()).values[0]?.value ?? 0;

/** Short enough for several rotations in a test (renewed at half of it), long enough for a loaded machine. */
const SECRET_TTL_S = 6;

describeWithEnvoy('SDS mode with two real Envoys and `citadel agent`', () => {
  const dir = tempDir('citadel-sds-envoy-');
  const sdsDir = path.join(dir, 'sds');
  let f: CaFixture;
  let agent: SdsAgent;
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let server: EnvoyProcess;
  let client: EnvoyProcess;
  let serverPort: number;
  let outboundUrl: string;

  before(async () => {
    f = await startCaFixture({ rateLimit: { ratePerSecond: 0, burst: 0 } });
    placeApp(f.view, '/shop/server', 'shop', 'server', ['agent-e']);
    placeApp(f.view, '/shop/client', 'shop', 'client', ['agent-e']);
    const cred = await agentCredentials(f, 'agent-e', dir);
    agent = await startSdsAgent(f, { host: 'agent-e', sdsDir, stateDir: path.join(dir, 'state'), ...cred, extra: ['--secret-ttl', `${SECRET_TTL_S}s`] });
    backend = await startBackend();
    // Envoy stays PRE_INITIALIZING until both secrets arrive: LIVE means the agent served them.
    server = await EnvoyProcess.start({ config: serverSidecar(socketOf(sdsDir, 'shop', 'server'), backend.port) });
    serverPort = await server.listenerPort('inbound');
    client = await EnvoyProcess.start({ config: clientSidecar(socketOf(sdsDir, 'shop', 'client'), serverPort) });
    outboundUrl = `http://127.0.0.1:${await client.listenerPort('outbound')}/`;
  });

  after(async () => {
    await client?.stop();
    await server?.stop();
    await agent?.stop();
    await backend?.close();
    await f?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the backend behind the server Envoy sees the caller’s SPIFFE ID in x-forwarded-client-cert', async () => {
    const before = backend.seen.length;
    const res = await fetch(outboundUrl, { headers: { 'x-forwarded-client-cert': 'By=forged;URI=spiffe://evil/ns/x/sa/y' } });
    assert.equal(res.status, 200, await res.text());
    assert.equal(backend.seen.length, before + 1);
    assert.match(backend.seen[before].xfcc ?? '', new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`));
  });

  it('the agent keeps each stream’s node from Envoy’s first request (about 60 KB, read through the field sieve)', async () => {
    const sds = await agent.debugSds();
    const proxies = Object.fromEntries(sds.identities.map((i) => [i.spiffeId, i.proxies]));
    assert.deepEqual(proxies, { [SERVER_ID]: ['sidecar~127.0.0.1~server'], [CLIENT_ID]: ['sidecar~127.0.0.1~client'] });
    const streams = Object.fromEntries(sds.identities.map((i) => [i.spiffeId, i.streams]));
    assert.deepEqual(streams, { [SERVER_ID]: 2, [CLIENT_ID]: 2 }, 'one stream per secret name: default and ROOTCA');
    const sent = await client.stat('cluster.sds-grpc.upstream_cx_tx_bytes_total');
    assert.ok(sent > 100_000, `Envoy sent ${sent} bytes on sds-grpc: two first requests of a real Envoy's size`);
  });

  it('Envoy’s /certs shows the agent’s certificates: its serial and SPIFFE ID, in the listener and the cluster', async () => {
    for (const [envoy, id] of [[server, SERVER_ID], [client, CLIENT_ID]] as const) {
      // A rotation may fall between the two reads: wait until they agree.
      await envoy.waitFor(`${id}: /certs and the agent agree`, async () => {
        const certs = await envoy.certs();
        const agentSerial = await agent.serialOf(id);
        return agentSerial !== undefined && envoySerials(certs).every((s) => s === normalSerial(agentSerial)) && certs;
      });
      const certs = await envoy.certs();
      assert.equal(certs.certificates.length, 1, 'one TLS context with a certificate per sidecar');
      const [entry] = certs.certificates;
      assert.deepEqual(entry.cert_chain[0].subject_alt_names, [{ uri: id }]);
      assert.equal(normalSerial(entry.ca_cert[0].serial_number), normalSerial(new X509Certificate(f.ca.rootCertPem).serialNumber), 'ROOTCA is the CA’s root');
    }
  });

  it(`certificates rotate (--secret-ttl ${SECRET_TTL_S}s) at least 3 times under a steady stream of requests: same Envoy processes, every request 200`, async (t) => {
    const pids = [server.pid, client.pid];
    const seenBefore = backend.seen.length;
    const serials = { server: new Set<string>(), client: new Set<string>() };
    const record = async () => {
      for (const s of envoySerials(await server.certs())) serials.server.add(s);
      for (const s of envoySerials(await client.certs())) serials.client.add(s);
    };
    await record();
    const issuedBefore = await issued(f);
    const started = performance.now();
    const traffic = steadyRequests(outboundUrl);
    let results: Awaited<ReturnType<typeof traffic.stop>> = [];
    try {
      await waitFor('3 rotations seen in both Envoys’ /certs', async () => {
        await record();
        return serials.server.size >= 4 && serials.client.size >= 4;
      }, { timeoutMs: 60_000, intervalMs: 100 });
    } finally {
      results = await traffic.stop();
    }
    const elapsedS = (performance.now() - started) / 1000;
    // Renewed at half the lifetime asked for (the CA back-dates notBefore by a minute; that minute is not lifetime).
    const bound = 2 * Math.ceil(elapsedS / (0.45 * SECRET_TTL_S) + 1);
    const csrs = (await issued(f)) - issuedBefore;
    assert.ok(csrs <= bound, `${csrs} certificates issued for 2 identities in ${elapsedS.toFixed(1)} s with --secret-ttl ${SECRET_TTL_S}s (at most ${bound} at half the lifetime)`);
    t.diagnostic(`${results.length} requests in ${elapsedS.toFixed(1)} s; serials seen: server ${serials.server.size}, client ${serials.client.size}; ${csrs} CSRs signed`);
    const failed = results.filter((r) => r.status !== 200);
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${results.length} requests failed`);
    assert.ok(results.length >= 20, `a steady stream: ${results.length} requests`);
    assert.deepEqual([server.pid, client.pid], pids, 'no Envoy was restarted');
    assert.ok(server.running && client.running);
    // The new client certificates were used in handshakes, not just loaded: XFCC's Hash is the presented certificate's.
    const hashes = new Set(backend.seen.slice(seenBefore).map((s) => /Hash=([0-9a-f]+)/.exec(s.xfcc ?? '')?.[1]));
    assert.ok(hashes.size >= 4, `client certificates seen by the server: ${hashes.size}`);
    for (const envoy of [server, client]) {
      const stats = await envoy.stats('^sds\\.(default|ROOTCA)\\.update_');
      assert.equal(stats.get('sds.default.update_rejected') ?? 0, 0, 'no secret NACKed');
      assert.ok((stats.get('sds.default.update_success') ?? 0) >= 4, JSON.stringify([...stats]));
    }
  });

  it('the XFCC hash is the SHA-256 of the certificate the agent serves on the client’s socket', async () => {
    const sds = new SdsTestClient(socketOf(sdsDir, 'shop', 'client'));
    try {
      // A rotation may fall between the two: try until the request and the fetch agree.
      await waitFor('a request whose XFCC hash is the certificate the agent serves', async () => {
        const served = (await sds.fetch(['default'])).secrets[0].certificateChain!;
        const before = backend.seen.length;
        const res = await fetch(outboundUrl);
        await res.text();
        const hash = /Hash=([0-9a-f]+)/.exec(backend.seen[before]?.xfcc ?? '')?.[1];
        return res.status === 200 && hash === createHash('sha256').update(new X509Certificate(served).raw).digest('hex');
      }, 20_000);
    } finally {
      sds.close();
    }
  });

  it('a client whose certificate comes from another root is refused; one from our CA is let in', async () => {
    const failedBefore = await server.stat('listener.inbound.ssl.fail_verify_error');
    const foreign = bundleFor(testCa(), 'shop', 'client');
    const refused = await tlsRequest(serverPort, { cert: foreign.certChainPem, key: foreign.keyPem });
    assert.match(refused, /ERR_SSL_TLSV1_ALERT_UNKNOWN_CA|unknown ca/i, refused);
    assert.equal(await server.stat('listener.inbound.ssl.fail_verify_error'), failedBefore + 1);
    const ours = f.ca.issueKeyCertBundle(workload('shop', 'client'));
    const accepted = await tlsRequest(serverPort, { cert: ours.certChainPem, key: ours.keyPem });
    assert.match(accepted, /^HTTP\/1\.1 200/, accepted);
  });

  /** A TLS connection straight to the server Envoy with a client certificate, then one request: the response's head, or the error. */
  function tlsRequest(port: number, cred: { cert: string; key: string }): Promise<string> {
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...cred, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
        socket.write('GET / HTTP/1.1\r\nhost: server\r\nconnection: close\r\n\r\n');
      });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (d) => (data += d));
      socket.on('error', (err) => resolve(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`));
      socket.on('close', () => resolve(data.split('\r\n')[0] ?? ''));
      socket.setTimeout(5000, () => socket.destroy(new Error('timed out')));
    });
  }
});
