/**
 * SDS mode under faults, with a real Envoy and `citadel agent` as a real process: the CA away
 * across a renewal and past the certificate's expiry, the agent killed and started again, Envoy
 * restarted.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { describeWithEnvoy, EnvoyProcess } from '../helpers/envoy';
import { tempDir } from '../helpers/pki';
import { SdsResponse, SdsStream, SdsTestClient } from '../helpers/sds-client';
import { waitFor } from '../helpers/wait';
import { MarathonView } from '../../src/marathon/view';
import { CaFixture, placeApp, startCaFixture } from '../server/fixtures';
import { agentCredentials, envoySerials, normalSerial, SERVER_ID, serverSidecar, socketOf, startBackend, startSdsAgent } from './sds-envoy-fixtures';
import type { SdsAgent } from './sds-envoy-fixtures';

const issued = async (f: CaFixture) => (await f.registry.getSingleMetric('citadel_server_success_cert_issuance_count')!.get()).values[0]?.value ?? 0;

/** The serial Envoy's /certs shows (one TLS context), once it is the one given, or any when none is given. */
async function envoySerial(envoy: EnvoyProcess): Promise<string | undefined> {
  const serials = envoySerials(await envoy.certs());
  return serials.length === 1 ? serials[0] : undefined;
}

/** Each response a test client's stream got, with when it arrived and the notAfter of the certificate in it. */
interface Received {
  at: number;
  serial: string;
  notAfter: number;
}

function receivedOf(r: SdsResponse): Received {
  const cert = new X509Certificate(r.secrets[0].certificateChain!);
  return { at: Date.now(), serial: normalSerial(cert.serialNumber), notAfter: new Date(cert.validTo).getTime() };
}

/** Reads every response of a stream as it comes. */
function collect(stream: SdsStream): Received[] {
  const out: Received[] = [];
  void (async () => {
    for (;;) out.push(receivedOf(await stream.next(600_000)));
  })().catch(() => undefined);
  return out;
}

const SECRET_TTL_S = 6;

describeWithEnvoy('SDS mode with the CA unreachable across a renewal and past the certificate’s expiry', () => {
  const dir = tempDir('citadel-sds-ca-outage-');
  const sdsDir = path.join(dir, 'sds');
  const view = new MarathonView();
  let f: CaFixture;
  let port: number;
  let agent: SdsAgent;
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let envoy: EnvoyProcess;
  let sds: SdsTestClient;

  before(async () => {
    placeApp(view, '/shop/server', 'shop', 'server', ['agent-o']);
    f = await startCaFixture({ dir: path.join(dir, 'ca'), view, rateLimit: { ratePerSecond: 0, burst: 0 } });
    port = f.server.port;
    const cred = await agentCredentials(f, 'agent-o', dir);
    agent = await startSdsAgent(f, { host: 'agent-o', sdsDir, stateDir: path.join(dir, 'state'), ...cred, extra: ['--secret-ttl', `${SECRET_TTL_S}s`] });
    backend = await startBackend();
    envoy = await EnvoyProcess.start({ config: serverSidecar(socketOf(sdsDir, 'shop', 'server'), backend.port) });
    sds = new SdsTestClient(socketOf(sdsDir, 'shop', 'server'));
  });

  after(async () => {
    sds?.close();
    await envoy?.stop();
    await agent?.stop();
    await backend?.close();
    await f?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('streams keep the valid secret while renewal retries with backoff; at expiry they end UNAVAILABLE; Envoy gets a fresh certificate when the CA returns, with no restart', async (t) => {
    const pid = envoy.pid;
    const first = sds.open(['default']);
    const onFirst = collect(first);
    await waitFor('the first secret', () => onFirst.length > 0);
    // Right after a renewal, so that the outage spans the next one.
    const fresh = await waitFor('a renewal', () => onFirst.length > 1 && onFirst[onFirst.length - 1], { timeoutMs: 20_000 });
    await f.close();
    const downAt = Date.now();
    const logsBefore = agent.logs().length;
    const renewFailures = () => agent.logs().slice(logsBefore).filter((l) => l.msg === `cannot renew the certificate of ${SERVER_ID}; retrying`);
    const updatesBefore = await envoy.stat('sds.default.update_success');

    // Renewal time passes: retries, the stream stays open with the valid certificate, nothing is pushed.
    await waitFor('three failed renewals', () => renewFailures().length >= 3, { timeoutMs: SECRET_TTL_S * 1000 });
    assert.ok(Date.now() < fresh.notAfter, 'still before expiry');
    const delays = renewFailures().map((l) => Number(l.retryInMs));
    assert.ok(delays[1] > delays[0] && delays[2] > delays[1], `backoff grows: ${delays}`);
    assert.ok(delays.some((d) => d % 250 !== 0), `jittered: ${delays}`);
    assert.equal(onFirst.length, 2, 'nothing new on the stream while the CA is away');
    assert.equal(await envoySerial(envoy), fresh.serial, 'Envoy keeps the valid certificate');
    assert.equal(await envoy.stat('sds.default.update_success'), updatesBefore);

    // Expiry with the CA still away: the stream ends UNAVAILABLE, saying why.
    const end = await first.ended;
    const endedAt = Date.now();
    assert.equal(end.code, status.UNAVAILABLE);
    assert.match(end.details, new RegExp(`the certificate of ${SERVER_ID} expired and the CA could not be reached`));
    assert.ok(endedAt >= fresh.notAfter - 50, `ended ${fresh.notAfter - endedAt} ms before expiry`);
    // Envoy retries: its streams come back, and wait. A new stream gets nothing while there is no valid certificate.
    await waitFor('Envoy’s streams back after the end', async () => ((await agent.debugSds()).identities[0]?.streams ?? 0) >= 2, { timeoutMs: 10_000 }); // ours ended too: these are Envoy's two new ones
    const second = sds.open(['default']);
    const onSecond = collect(second);

    // The CA returns (same port, same store, Marathon unchanged): a fresh certificate, with no Envoy restart.
    f = await startCaFixture({ dir: path.join(dir, 'ca'), port, view, rateLimit: { ratePerSecond: 0, burst: 0 } });
    const upAt = Date.now();
    assert.equal(onSecond.length, 0, 'nothing was sent while the certificate was expired');
    const serial = await envoy.waitFor('Envoy to get a fresh certificate', async () => {
      const now = await envoySerial(envoy);
      return now !== fresh.serial && now === normalSerial((await agent.serialOf(SERVER_ID)) ?? '') && now;
    }, { timeoutMs: 30_000, intervalMs: 20 });
    t.diagnostic(`CA down for ${upAt - downAt} ms (the certificate expired ${upAt - fresh.notAfter} ms before it returned); ${renewFailures().length} failed renewals, retry delays ${renewFailures().map((l) => l.retryInMs).join(', ')} ms; Envoy held a fresh certificate ${Date.now() - upAt} ms after the CA returned`);
    assert.equal(envoy.pid, pid, 'no restart');
    await waitFor('the waiting stream gets it too', () => onSecond.length > 0);
    assert.equal(onSecond[0].serial, serial);
    for (const r of [...onFirst, ...onSecond]) assert.ok(r.notAfter > r.at, `a certificate sent ${r.at - r.notAfter} ms after its expiry`);

    // Back to normal: one renewal per half lifetime (one rotation loop per identity, however the certificate came back).
    const issuedAtRecovery = await issued(f);
    const windowMs = 2 * SECRET_TTL_S * 1000;
    await new Promise((r) => setTimeout(r, windowMs)); // the window counted; not a wait for a condition
    const renewals = (await issued(f)) - issuedAtRecovery;
    const bound = Math.ceil(windowMs / (0.45 * SECRET_TTL_S * 1000)) + 1;
    t.diagnostic(`${renewals} certificates in the ${windowMs} ms after recovery`);
    assert.ok(renewals >= 2 && renewals <= bound, `${renewals} certificates in ${windowMs} ms with --secret-ttl ${SECRET_TTL_S}s (expected about ${Math.round(windowMs / (SECRET_TTL_S * 500))}, at most ${bound})`);
    second.close();
  });
});

describeWithEnvoy('SDS mode under faults: the agent killed and restarted, Envoy restarted', () => {
  const dir = tempDir('citadel-sds-restart-');
  const sdsDir = path.join(dir, 'sds');
  const stateDir = path.join(dir, 'state');
  let f: CaFixture;
  let agent: SdsAgent;
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let envoy: EnvoyProcess;
  let rootFile: string;

  before(async () => {
    f = await startCaFixture({ rateLimit: { ratePerSecond: 0, burst: 0 } });
    placeApp(f.view, '/shop/server', 'shop', 'server', ['agent-r']);
    const cred = await agentCredentials(f, 'agent-r', dir);
    rootFile = cred.rootFile;
    agent = await startSdsAgent(f, { host: 'agent-r', sdsDir, stateDir, ...cred });
    backend = await startBackend();
    envoy = await EnvoyProcess.start({ config: serverSidecar(socketOf(sdsDir, 'shop', 'server'), backend.port) });
  });

  after(async () => {
    await envoy?.stop();
    await agent?.stop();
    await backend?.close();
    await f?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the agent killed (SIGKILL) and started again on its --state-dir: Envoy reconnects by itself and gets the new agent’s certificate', async (t) => {
    const pid = envoy.pid;
    const before = await envoySerial(envoy);
    assert.equal(before, normalSerial((await agent.serialOf(SERVER_ID))!));
    const killedAt = performance.now();
    await agent.stop('SIGKILL');
    // No join token this time: the node certificate saved in the state directory is reused.
    agent = await startSdsAgent(f, { host: 'agent-r', sdsDir, stateDir, rootFile });
    const socketAt = await waitFor('the socket again', () => existsSync(socketOf(sdsDir, 'shop', 'server')) && performance.now(), { timeoutMs: 10_000, intervalMs: 5 });
    const streamAt = await waitFor('Envoy’s SDS streams on the new agent', async () => ((await agent.debugSds()).identities.find((i) => i.spiffeId === SERVER_ID)?.streams ?? 0) >= 2 && performance.now(), { timeoutMs: 30_000, intervalMs: 5 });
    const serial = await envoy.waitFor('Envoy to hold the restarted agent’s certificate', async () => {
      const now = await envoySerial(envoy);
      const agentSerial = await agent.serialOf(SERVER_ID);
      return now !== before && agentSerial !== undefined && now === normalSerial(agentSerial) && now;
    }, { timeoutMs: 30_000, intervalMs: 10 });
    const securedAt = performance.now();
    const ms = (a: number, b: number) => `${Math.round(b - a)} ms`;
    t.diagnostic(`after SIGKILL: agent process up ${ms(killedAt, agent.spawnedAt)}, agent running ${ms(killedAt, agent.runningAt)} (${ms(agent.spawnedAt, agent.runningAt)} from spawn), socket back ${ms(killedAt, socketAt)}, Envoy's streams open ${ms(killedAt, streamAt)}, Envoy holding the new certificate ${ms(killedAt, securedAt)} (${ms(agent.spawnedAt, securedAt)} from spawn)`);
    assert.notEqual(serial, before, 'a new key and certificate: the old key died with the process');
    assert.equal(envoy.pid, pid, 'Envoy was not restarted');
  });

  it('Envoy restarted: it gets the agent’s cached certificate at once, with no new CSR', async (t) => {
    const before = await envoySerial(envoy);
    assert.ok(before);
    const issuedBefore = await issued(f);
    const csrsBefore = await agent.metrics();
    const startedAt = performance.now();
    await envoy.restart(); // resolves once /ready says LIVE: both secrets arrived
    t.diagnostic(`Envoy restarted and LIVE (secrets served) after ${Math.round(performance.now() - startedAt)} ms`);
    assert.equal(await envoySerial(envoy), before, 'the same certificate');
    assert.equal(await issued(f), issuedBefore, 'the CA signed nothing');
    assert.equal(csrCount(await agent.metrics()), csrCount(csrsBefore), 'the agent sent no CSR');
  });
});

/** citadel_agent_csr_duration_seconds_count from a /metrics page. */
function csrCount(metrics: string): number {
  return Number(/^citadel_agent_csr_duration_seconds_count (\d+)/m.exec(metrics)?.[1] ?? 0);
}
