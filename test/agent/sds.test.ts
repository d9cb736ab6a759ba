/**
 * The node agent's SDS server against a gRPC client built from Envoy's official protos, over the
 * Unix socket: first secrets, the protocol (ACK, NACK, stale nonces, added names), both API
 * versions, one CSR for many streams, entitlement by placement, keys kept off the disk.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { NodeAgent } from '../../src/agent/node-agent';
import { SECRET_TYPE_URL } from '../../src/api/sds';
import { checkBundle } from '../../src/pki/bundle';
import { parseCertificatePem } from '../../src/pki/certificate';
import { describeKey, publicKeyFromSpki } from '../../src/pki/keys';
import { splitCertificates } from '../../src/pki/pem';
import { newJoinToken } from '../../src/server/join-token';
import { CaFixture, placeApp, putWorkloadSecret, removeApp, startCaFixture, workload } from '../server/fixtures';
import { tempDir } from '../helpers/pki';
import { SdsResponse, SdsTestClient } from '../helpers/sds-client';
import { waitFor } from '../helpers/wait';

const issued = async (f: CaFixture) => (await f.registry.getSingleMetric('citadel_server_success_cert_issuance_count')!.get()).values[0]?.value ?? 0;

function checkServed(f: CaFixture, r: SdsResponse, ns: string, sa: string) {
  const cert = r.secrets.find((s) => s.certificateChain)!;
  const check = checkBundle({ certChainPem: cert.certificateChain!, keyPem: cert.privateKey! }, { trustedRootPem: f.ca.rootCertPem, expected: workload(ns, sa) });
  assert.deepEqual(check.problems, []);
  return parseCertificatePem(splitCertificates(cert.certificateChain!)[0]);
}

describe('the node agent in SDS mode, with a client from Envoy’s protos', () => {
  let f: CaFixture;
  let agent: NodeAgent;
  let sdsDir: string;
  let stateDir: string;
  const registry = new Registry();
  const clients: SdsTestClient[] = [];
  const client = (ns: string, sa: string) => {
    const c = new SdsTestClient(path.join(sdsDir, ns, sa, 'socket'));
    clients.push(c);
    return c;
  };

  before(async () => {
    f = await startCaFixture({ rateLimit: { ratePerSecond: 0, burst: 0 } });
    sdsDir = tempDir();
    stateDir = tempDir();
    placeApp(f.view, '/shop/web', 'shop', 'web', ['agent-1']);
    placeApp(f.view, '/shop/pay', 'shop', 'pay', ['agent-1']);
    placeApp(f.view, '/ops/other', 'ops', 'other', ['agent-2']);
    await putWorkloadSecret(f, 'shop', 'web'); // a Citadel secret in the store: SDS mode must never serve its key
    const t = newJoinToken('agent-1', 60_000);
    await f.store.putJoinToken(t.record);
    agent = new NodeAgent({ caAddress: f.address, caRootPem: f.ca.rootCertPem, joinToken: t.token, host: 'agent-1', sds: { sdsDir }, stateDir, registry });
    await agent.start();
  });
  after(async () => {
    for (const c of clients) c.close();
    await agent.stop();
    await f.close();
  });

  it('a socket per identity placed on this node, with Istio’s modes; none for other nodes’ identities', async () => {
    await waitFor('both sockets', () => fs.existsSync(path.join(sdsDir, 'shop', 'web', 'socket')) && fs.existsSync(path.join(sdsDir, 'shop', 'pay', 'socket')));
    assert.equal(fs.statSync(path.join(sdsDir, 'shop', 'web')).mode & 0o777, 0o750);
    assert.equal(fs.statSync(path.join(sdsDir, 'shop', 'web', 'socket')).mode & 0o777, 0o666);
    assert.equal(fs.existsSync(path.join(sdsDir, 'ops')), false);
  });

  it('default and ROOTCA: the certificate and key made here, and the root; keys never on disk', async () => {
    const s = client('shop', 'web').open(['default']);
    const r = await s.next();
    assert.equal(r.typeUrl, SECRET_TYPE_URL.v3);
    assert.deepEqual(r.resourceTypes, [SECRET_TYPE_URL.v3]);
    assert.equal(r.secrets.length, 1);
    assert.equal(r.secrets[0].name, 'default');
    const leaf = checkServed(f, r, 'shop', 'web');
    assert.equal(describeKey(publicKeyFromSpki(leaf.spkiDer)), 'EC P-256');
    const stored = (await f.store.getSecret('shop', 'istio.web'))!;
    assert.notEqual(r.secrets[0].privateKey, stored.keyPem, 'the key is made on the node, not the Citadel secret from the store');
    const lifetime = leaf.notAfter.getTime() - Date.now();
    assert.ok(lifetime > 23.9 * 3_600_000 && lifetime <= 24 * 3_600_000, `--secret-ttl 24h by default, got ${lifetime}`);
    const root = client('shop', 'web').open(['ROOTCA']);
    const rr = await root.next();
    assert.deepEqual(rr.secrets, [{ name: 'ROOTCA', trustedCa: f.ca.rootCertPem, certificateChain: undefined, privateKey: undefined }]);
    const onDisk = [sdsDir, stateDir].flatMap((d) => (fs.readdirSync(d, { recursive: true }) as string[]).map((p) => path.join(d, p))).filter((p) => fs.statSync(p).isFile());
    for (const file of onDisk) assert.ok(!fs.readFileSync(file, 'utf8').includes(r.secrets[0].privateKey!.split('\n')[1]), `${file} holds the workload key`);
    s.close();
    root.close();
  });

  it('SPIRE’s names too; an empty list means both; another identity’s SPIFFE ID is INVALID_ARGUMENT naming it', async () => {
    const c = client('shop', 'pay');
    const spire = c.open(['spiffe://cluster.local/ns/shop/sa/pay']);
    const r = await spire.next();
    assert.equal(r.secrets[0].name, 'spiffe://cluster.local/ns/shop/sa/pay');
    checkServed(f, r, 'shop', 'pay');
    const td = await c.open(['spiffe://cluster.local']).next();
    assert.equal(td.secrets[0].trustedCa, f.ca.rootCertPem);
    const both = await c.open([]).next();
    assert.deepEqual(both.secrets.map((x) => x.name).sort(), ['ROOTCA', 'default']);
    const forged = c.open(['spiffe://cluster.local/ns/shop/sa/web']);
    const end = await forged.ended;
    assert.equal(end.code, status.INVALID_ARGUMENT);
    assert.match(end.details, /resource "spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web" is not served on this socket/);
    assert.equal(forged.received, 0, 'nothing else on that stream');
    const fetched = await c.fetch(['default']);
    checkServed(f, fetched, 'shop', 'pay');
  });

  it('the protocol: an ACK gets no answer, a stale nonce is ignored, added names are sent, a NACK is not answered with the same secret', async () => {
    const c = client('shop', 'pay');
    const s = c.open(['default']);
    const first = await s.next();
    s.ack(first, ['default']);
    s.send({ versionInfo: first.versionInfo, responseNonce: 'not-the-last-nonce', resourceNames: ['default', 'ROOTCA'] });
    s.ack(first, ['default', 'ROOTCA']); // adds ROOTCA
    const added = await s.next();
    assert.deepEqual(added.secrets.map((x) => x.name), ['ROOTCA'], 'only the added name');
    s.nack(added, ['default', 'ROOTCA'], first.versionInfo, 'Failed to load certificate chain from <inline>');
    await agent.workloadCerts!.rotateNow({ namespace: 'shop', serviceAccount: 'pay' });
    const rotated = await s.next();
    assert.deepEqual(rotated.secrets.map((x) => x.name), ['default'], 'new content after the NACK: the new certificate, not ROOTCA again');
    assert.notEqual(rotated.secrets[0].certificateChain, first.secrets[0].certificateChain);
    s.ack(rotated, ['default', 'ROOTCA']);
    assert.equal(s.pending, 0, 'no answer to the ACK, the stale request or the NACK');
    assert.equal(s.received, 3);
    const nacks = (await registry.getSingleMetric('citadel_agent_sds_nacks_total')!.get()).values.reduce((n, v) => n + v.value, 0);
    assert.equal(nacks, 1);
    assert.equal(agent.sds!.lastNack?.message, 'Failed to load certificate chain from <inline>');
  });

  it('DeltaSecrets (v3 and v2) is answered UNIMPLEMENTED, and the socket goes on serving StreamSecrets', async () => {
    const socket = path.join(sdsDir, 'shop', 'pay', 'socket');
    const raw = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    try {
      for (const service of ['envoy.service.secret.v3.SecretDiscoveryService', 'envoy.service.discovery.v2.SecretDiscoveryService']) {
        const call = raw.makeBidiStreamRequest(`/${service}/DeltaSecrets`, (b: Buffer) => b, (b: Buffer) => b, {});
        const received: Buffer[] = [];
        call.on('data', (b: Buffer) => received.push(b));
        call.on('error', () => undefined);
        const end = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
        call.write(Buffer.alloc(0)); // an empty DeltaDiscoveryRequest
        const st = await end;
        assert.equal(st.code, status.UNIMPLEMENTED, `${service}/DeltaSecrets: ${st.details}`);
        assert.match(st.details, /DeltaSecrets/);
        assert.equal(received.length, 0);
      }
    } finally {
      raw.close();
    }
    checkServed(f, await client('shop', 'pay').open(['default']).next(), 'shop', 'pay');
  });

  it('v2 (Istio 1.1-era proxies): the same secrets with the v2 type URL', async () => {
    const r = await client('shop', 'web').open(['default'], 'v2').next();
    assert.equal(r.typeUrl, SECRET_TYPE_URL.v2);
    assert.deepEqual(r.resourceTypes, [SECRET_TYPE_URL.v2]);
    checkServed(f, r, 'shop', 'web');
  });

  it('1,000 concurrent streams of one identity: every one gets the same certificate, from one CSR', async () => {
    const before = await issued(f);
    placeApp(f.view, '/shop/many', 'shop', 'many', ['agent-1']);
    await waitFor('the socket', () => fs.existsSync(path.join(sdsDir, 'shop', 'many', 'socket')));
    const c = client('shop', 'many');
    const streams = Array.from({ length: 1000 }, () => c.open(['default']));
    const responses = await Promise.all(streams.map((s) => s.next(30_000)));
    assert.equal(new Set(responses.map((r) => r.secrets[0].certificateChain)).size, 1);
    assert.equal((await issued(f)) - before, 1, 'one CSR for all of them');
    for (const s of streams) s.close();
  });

  it('a client that half-closes its stream gets the call ended, OK, and the stream is gone (not pushed to forever)', async () => {
    const streamsOf = () => agent.sds!.identities().find((i) => i.account.serviceAccount === 'pay')!.streams;
    const before = streamsOf();
    const s = client('shop', 'pay').open(['default']);
    await s.next();
    assert.equal(streamsOf(), before + 1);
    s.end();
    const end = await Promise.race([s.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
    assert.equal(end?.code, status.OK, 'the agent ends a half-closed stream');
    await waitFor('the stream gone from the socket', () => streamsOf() === before);
  });

  it('an identity that leaves the node: its streams end, its socket goes, and it comes back when placed again', async () => {
    const s = client('shop', 'web').open(['default']);
    await s.next();
    removeApp(f.view, '/shop/web');
    const end = await s.ended;
    assert.equal(end.code, status.UNAVAILABLE);
    await waitFor('the socket gone', () => !fs.existsSync(path.join(sdsDir, 'shop', 'web')));
    placeApp(f.view, '/shop/web', 'shop', 'web', ['agent-1']);
    await waitFor('the socket back', () => fs.existsSync(path.join(sdsDir, 'shop', 'web', 'socket')));
    checkServed(f, await client('shop', 'web').open(['default']).next(), 'shop', 'web');
  });
});
