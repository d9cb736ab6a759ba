import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { parseCertificatePem } from '../../src/pki/certificate';
import { identityOfCertificate } from '../../src/pki/verify';
import { newJoinToken } from '../../src/server/join-token';
import { CaFixture, clientFor, csrFor, node, spiffeId, startCaFixture } from './fixtures';

describe('node attestation with one-time join tokens (citadel.v1.NodeService/AttestNode)', () => {
  let f: CaFixture;
  before(async () => {
    f = await startCaFixture();
  });
  after(() => f.close());

  const attestations = async (result: string) =>
    (await f.registry.getSingleMetric('citadel_server_node_attestation_count')!.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

  async function token(host: string, ttlMs = 60_000): Promise<string> {
    const t = newJoinToken(host, ttlMs);
    await f.store.putJoinToken(t.record);
    return t.token;
  }

  it('a token buys a node certificate for its host, once; the node then renews with it', async () => {
    const t = await token('agent-7.mesos');
    const anon = clientFor(f);
    try {
      const id = spiffeId(node('agent-7.mesos'));
      const { csr, keyPem } = csrFor(id);
      const chain = await anon.attestNode(t, 'agent-7.mesos', csr, 3600);
      assert.equal(spiffeId(identityOfCertificate(parseCertificatePem(chain[0]))), 'spiffe://cluster.local/mesos-agent/agent-7.mesos');
      assert.equal(chain[chain.length - 1], f.ca.rootCertPem);
      // Replayed: refused, nothing issued.
      const replay = await anon.attestNode(t, 'agent-7.mesos', csrFor(id).csr).catch((e) => e);
      assert.equal(replay.code, status.UNAUTHENTICATED);
      assert.match(replay.details, /unknown or was already used/);
      // Renewal with the node certificate itself.
      const self = clientFor(f, { keyPem, certChainPem: chain[0] });
      try {
        const renewed = await self.createCertificate(csrFor(id).csr, 3600);
        assert.equal(spiffeId(identityOfCertificate(parseCertificatePem(renewed[0]))), id);
      } finally {
        self.close();
      }
    } finally {
      anon.close();
    }
  });

  it('an expired token is refused', async () => {
    const t = await token('agent-8.mesos', -1000);
    const anon = clientFor(f);
    try {
      const before = await attestations('ok');
      const err = await anon.attestNode(t, 'agent-8.mesos', csrFor(spiffeId(node('agent-8.mesos'))).csr).catch((e) => e);
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.match(err.details, /expired/);
      assert.equal(await attestations('ok'), before);
    } finally {
      anon.close();
    }
  });

  it('a token is refused for another host, and is spent by that attempt', async () => {
    const t = await token('agent-9.mesos');
    const anon = clientFor(f);
    try {
      const err = await anon.attestNode(t, 'agent-10.mesos', csrFor(spiffeId(node('agent-10.mesos'))).csr).catch((e) => e);
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /created for host agent-9.mesos/);
      const again = await anon.attestNode(t, 'agent-9.mesos', csrFor(spiffeId(node('agent-9.mesos'))).csr).catch((e) => e);
      assert.equal(again.code, status.UNAUTHENTICATED);
      assert.equal(await attestations('wrong_host'), 1);
    } finally {
      anon.close();
    }
  });

  it('a CSR that does not name the node is refused without spending the token', async () => {
    const t = await token('agent-11.mesos');
    const anon = clientFor(f);
    try {
      const err = await anon.attestNode(t, 'agent-11.mesos', csrFor('spiffe://cluster.local/ns/default/sa/default').csr).catch((e) => e);
      assert.equal(err.code, status.PERMISSION_DENIED);
      const ok = await anon.attestNode(t, 'agent-11.mesos', csrFor(spiffeId(node('agent-11.mesos'))).csr);
      assert.equal(ok.length, 2);
    } finally {
      anon.close();
    }
  });

  it('a made-up token is refused', async () => {
    const anon = clientFor(f);
    try {
      const err = await anon.attestNode('cjt1.' + 'A'.repeat(43), 'agent-12.mesos', csrFor(spiffeId(node('agent-12.mesos'))).csr).catch((e) => e);
      assert.equal(err.code, status.UNAUTHENTICATED);
    } finally {
      anon.close();
    }
  });
});
