import assert from 'node:assert/strict';
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createSelfSignedRoot, CertificateAuthority } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { NodeAgent } from '../../src/agent/node-agent';
import { newJoinToken } from '../../src/server/join-token';
import { CaFixture, credentialFor, placeApp, putWorkloadSecret, removeApp, startCaFixture, workload } from '../server/fixtures';
import { bundleProblems, mtlsHandshake, tlsFilesOf } from './bundle-check';
import { waitFor } from '../helpers/wait';

async function joinToken(f: CaFixture, host: string): Promise<string> {
  const t = newJoinToken(host, 60_000);
  await f.store.putJoinToken(t.record);
  return t.token;
}

const read = (dir: string, ns: string, sa: string, file: string) => fs.readFile(path.join(dir, ns, sa, file), 'utf8');

describe('the node agent in file mode', () => {
  let f: CaFixture;
  let certsDir: string;
  let agent: NodeAgent;
  before(async () => {
    f = await startCaFixture();
    certsDir = mkdtempSync(path.join(tmpdir(), 'citadel-certs-'));
    await putWorkloadSecret(f, 'shop', 'frontend');
    await putWorkloadSecret(f, 'shop', 'payments');
    await putWorkloadSecret(f, 'ops', 'elsewhere');
    placeApp(f.view, '/shop/frontend', 'shop', 'frontend', ['agent-1']);
    placeApp(f.view, '/shop/payments', 'shop', 'payments', ['agent-1']);
    placeApp(f.view, '/ops/elsewhere', 'ops', 'elsewhere', ['agent-2']);
    agent = new NodeAgent({ caAddress: f.address, caRootPem: f.ca.rootCertPem, joinToken: await joinToken(f, 'agent-1'), host: 'agent-1', certsDir });
    await agent.start();
  });
  after(async () => {
    await agent.stop();
    await f.close();
    rmSync(certsDir, { recursive: true, force: true });
  });

  it('writes <ns>/<sa>/{cert-chain.pem,key.pem,root-cert.pem} for the identities on its host, and only those', async () => {
    await waitFor('two bundles', async () => (await agent.certs!.list()).length === 2);
    assert.deepEqual((await agent.certs!.list()).map((d) => `${d.namespace}/${d.serviceAccount}`).sort(), ['shop/frontend', 'shop/payments']);
    for (const sa of ['frontend', 'payments']) assert.deepEqual(await bundleProblems(certsDir, 'shop', sa, f.ca.rootCertPem), []);
    const keyStat = await fs.stat(path.join(certsDir, 'shop', 'payments', 'key.pem'));
    assert.equal(keyStat.mode & 0o777, 0o600);
    assert.equal((await fs.stat(path.join(certsDir, 'shop', 'payments', 'envoy-sds-cert.json'))).mode & 0o777, 0o600, 'the Envoy SDS file with the key is as private as key.pem');
    assert.equal((await fs.stat(path.join(certsDir, 'shop', 'payments', 'envoy-sds-root.json'))).mode & 0o777, 0o644);
    for (const f of ['cert-chain.pem', 'envoy-sds-cert.json']) assert.equal(await fs.readlink(path.join(certsDir, 'shop', 'payments', f)), `..data/${f}`, `${f} swaps with the same ..data`);
    assert.ok((await fs.lstat(path.join(certsDir, 'shop', 'payments'))).isDirectory(), 'the identity directory is a real directory (what the sidecar mounts)');
    await assert.rejects(fs.access(path.join(certsDir, 'ops')));
  });

  it("with one root in --ca-root, root-cert.pem is the secret's root byte for byte, as Citadel 1.0.5 wrote it", async () => {
    for (const sa of ['frontend', 'payments']) {
      const secret = (await f.store.getSecret('shop', `istio.${sa}`))!;
      assert.equal(await read(certsDir, 'shop', sa, 'root-cert.pem'), secret.rootCertPem);
      assert.equal(await read(certsDir, 'shop', sa, 'cert-chain.pem'), secret.certChainPem);
      assert.equal(await read(certsDir, 'shop', sa, 'key.pem'), secret.keyPem);
      const sdsRoot = JSON.parse(await read(certsDir, 'shop', sa, 'envoy-sds-root.json')) as { resources: Array<{ validation_context: { trusted_ca: { inline_string: string } } }> };
      assert.equal(sdsRoot.resources[0].validation_context.trusted_ca.inline_string, secret.rootCertPem);
    }
  });

  it("two workloads' bundles complete a real mutual-TLS handshake; a foreign root's certificate is refused", async () => {
    const client = await tlsFilesOf(certsDir, 'shop', 'frontend');
    const seen = await mtlsHandshake(await tlsFilesOf(certsDir, 'shop', 'payments'), client);
    assert.equal(seen.serverSawClient, 'URI:spiffe://cluster.local/ns/shop/sa/frontend');
    assert.equal(seen.clientSawServer, 'URI:spiffe://cluster.local/ns/shop/sa/payments');

    const other = CertificateAuthority.fromSecret(createSelfSignedRoot(DEFAULT_CA_CONFIG), DEFAULT_CA_CONFIG);
    const foreign = credentialFor(other, workload('shop', 'frontend'));
    await assert.rejects(mtlsHandshake(await tlsFilesOf(certsDir, 'shop', 'payments'), { key: foreign.keyPem, cert: foreign.certChainPem, ca: client.ca }));
  });

  it('a rotated secret replaces the whole bundle; an identity that leaves the node is removed', async () => {
    const before = await read(certsDir, 'shop', 'payments', 'cert-chain.pem');
    await putWorkloadSecret(f, 'shop', 'payments');
    await waitFor('rotated bundle', async () => (await read(certsDir, 'shop', 'payments', 'cert-chain.pem')) !== before, 2000);
    assert.deepEqual(await bundleProblems(certsDir, 'shop', 'payments', f.ca.rootCertPem), []);
    const hidden = (await fs.readdir(path.join(certsDir, 'shop', 'payments'))).filter((e) => e.startsWith('..') && e !== '..data');
    assert.equal(hidden.length, 1, `old versions left behind: ${hidden.join(', ')}`);

    removeApp(f.view, '/shop/payments');
    await waitFor('payments removed', async () => !(await fs.stat(path.join(certsDir, 'shop', 'payments')).catch(() => undefined)), 2000);
    assert.deepEqual(await bundleProblems(certsDir, 'shop', 'frontend', f.ca.rootCertPem), []);
    placeApp(f.view, '/shop/payments', 'shop', 'payments', ['agent-1']);
    await waitFor('payments back', async () => (await bundleProblems(certsDir, 'shop', 'payments', f.ca.rootCertPem)).length === 0, 2000);
  });

  /** Writes a tampered version of a secret into the store and waits until the agent has applied (refused) it. */
  const deliverTampered = async (sa: string, tamper: (s: NonNullable<Awaited<ReturnType<typeof f.store.getSecret>>>) => Partial<typeof s>) => {
    const current = (await f.store.getSecret('shop', `istio.${sa}`))!;
    const applied = new Promise((resolve) => agent.once('synced', resolve));
    await f.store.putSecret({ ...current, ...tamper(current), metadata: { ...current.metadata, serialNumber: `${current.metadata.serialNumber}0` } });
    await applied;
  };

  it('a secret whose certificate names another identity is refused; the last valid files stay', async () => {
    const before = await read(certsDir, 'shop', 'frontend', 'cert-chain.pem');
    const wrong = f.ca.issueKeyCertBundle(workload('shop', 'admin'));
    await deliverTampered('frontend', () => ({ certChainPem: wrong.certChainPem, keyPem: wrong.keyPem }));
    assert.equal(await read(certsDir, 'shop', 'frontend', 'cert-chain.pem'), before);
    assert.deepEqual(await bundleProblems(certsDir, 'shop', 'frontend', f.ca.rootCertPem), []);
    await putWorkloadSecret(f, 'shop', 'frontend');
    await waitFor('a good secret again', async () => (await read(certsDir, 'shop', 'frontend', 'cert-chain.pem')) !== before, 2000);
  });

  it("a secret whose key is not its certificate's is refused before a byte is written", async () => {
    const before = { cert: await read(certsDir, 'shop', 'frontend', 'cert-chain.pem'), key: await read(certsDir, 'shop', 'frontend', 'key.pem') };
    const otherKey = f.ca.issueKeyCertBundle(workload('shop', 'frontend')).keyPem; // right identity, another key
    const fresh = f.ca.issueKeyCertBundle(workload('shop', 'frontend'));
    await deliverTampered('frontend', () => ({ certChainPem: fresh.certChainPem, keyPem: otherKey }));
    assert.equal(await read(certsDir, 'shop', 'frontend', 'cert-chain.pem'), before.cert);
    assert.equal(await read(certsDir, 'shop', 'frontend', 'key.pem'), before.key);
    assert.deepEqual(await bundleProblems(certsDir, 'shop', 'frontend', f.ca.rootCertPem), []);
  });

  it('a directory an older agent wrote (no Envoy SDS files) is completed on the next start, with the same certificate', async () => {
    await agent.stop(); // payments: frontend's current secret in the store is the refused one of the test before
    const dir = path.join(certsDir, 'shop', 'payments');
    const version = await fs.readlink(path.join(dir, '..data'));
    for (const f of ['envoy-sds-cert.json', 'envoy-sds-root.json']) {
      await fs.rm(path.join(dir, f));
      await fs.rm(path.join(dir, version, f));
    }
    const chain = await read(certsDir, 'shop', 'payments', 'cert-chain.pem');
    agent = new NodeAgent({ caAddress: f.address, caRootPem: f.ca.rootCertPem, joinToken: 'cjt1.spent-token-is-not-needed', host: 'agent-1', certsDir });
    await agent.start();
    await waitFor('the Envoy SDS files written', async () => (await bundleProblems(certsDir, 'shop', 'payments', f.ca.rootCertPem)).length === 0, 5000);
    assert.equal(await read(certsDir, 'shop', 'payments', 'cert-chain.pem'), chain, 'the current secret, not a new one');
  });

  it('a restart reuses the saved node certificate (the join token is spent) and the files', async () => {
    const chainBefore = agent.nodeCredential!.certChainPem;
    await agent.stop();
    const attests = async () => (await f.registry.getSingleMetric('citadel_server_node_attestation_count')!.get()).values.find((v) => v.labels.result === 'ok')?.value ?? 0;
    const n = await attests();
    agent = new NodeAgent({ caAddress: f.address, caRootPem: f.ca.rootCertPem, joinToken: 'cjt1.spent-token-is-not-needed', host: 'agent-1', certsDir });
    let synced = 0;
    agent.on('synced', () => synced++);
    await agent.start();
    assert.equal(agent.nodeCredential!.certChainPem, chainBefore);
    await waitFor('a sync after restart', () => synced > 0);
    assert.equal(await attests(), n, 'no new attestation');
    assert.deepEqual((await agent.certs!.list()).map((d) => d.serviceAccount).sort(), ['frontend', 'payments']);
  });
});
