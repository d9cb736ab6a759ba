/**
 * Files mode in the middle of a root rotation (docs/operations.md, "Root rotation"): every agent
 * has both roots in --ca-root, one node's secrets are still under the old root and another's
 * already under the new one. Each identity's root-cert.pem is its secret's root first, then the
 * other root, so the two workloads complete mutual TLS; with one root each they refuse each other.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodeAgent } from '../../src/agent/node-agent';
import { envoyBootstrap } from '../../src/mesh/bootstrap/envoy';
import { splitCertificates } from '../../src/pki/pem';
import { newJoinToken } from '../../src/server/join-token';
import { EnvoyProcess, envoyBinary } from '../helpers/envoy';
import { cliPath, tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import { CaFixture, placeApp, putWorkloadSecret, startCaFixture, workload } from '../server/fixtures';
import { bundleProblems, mtlsHandshake, tlsFilesOf, type TlsFiles } from './bundle-check';
import { normalSerial } from './sds-envoy-fixtures';

const citadel = (...args: string[]) => {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** What a sidecar's files held before: the secret's one root (the first of the bundle). */
const oneRoot = (t: TlsFiles): TlsFiles => ({ ...t, ca: splitCertificates(t.ca)[0] });
/** OpenSSL's refusal of a chain whose root is not among the trusted ones (cert-chain.pem ends with its root or not). */
const UNTRUSTED_ROOT = /self-signed certificate in certificate chain|unable to get (local )?issuer certificate/;

describe('files mode with both roots in --ca-root, workloads on either root', () => {
  let oldCa: CaFixture;
  let newCa: CaFixture;
  let oldRoot: string;
  let newRoot: string;
  const oldDir = tempDir('citadel-certs-old-');
  const newDir = tempDir('citadel-certs-new-');
  const agents: NodeAgent[] = [];
  let newAgent: NodeAgent;

  /** An agent of `ca` for host, --ca-root as the operator wrote it (both roots, old first, on every node: step 1). */
  const startAgent = async (ca: CaFixture, host: string, certsDir: string, caRootPem: string): Promise<{ agent: NodeAgent; synced: Promise<unknown> }> => {
    const token = newJoinToken(host, 600_000);
    await ca.store.putJoinToken(token.record);
    const agent = new NodeAgent({ caAddress: ca.address, caRootPem, joinToken: token.token, host, certsDir, backoff: { initialMs: 50, maxMs: 500 } });
    agents.push(agent);
    const synced = new Promise((resolve) => agent.once('synced', resolve));
    await agent.start();
    return { agent, synced };
  };
  const restartNewAgent = async (caRootPem: string): Promise<void> => {
    await newAgent.stop();
    const next = await startAgent(newCa, 'agent-2', newDir, caRootPem);
    newAgent = next.agent;
    await next.synced;
  };
  const dataOf = (dir: string, ns: string, sa: string) => fs.readlink(path.join(dir, ns, sa, '..data'));
  const rootFile = (dir: string, ns: string, sa: string) => fs.readFile(path.join(dir, ns, sa, 'root-cert.pem'), 'utf8');

  before(async () => {
    oldCa = await startCaFixture();
    newCa = await startCaFixture();
    oldRoot = oldCa.ca.rootCertPem;
    newRoot = newCa.ca.rootCertPem;
    assert.notEqual(oldRoot, newRoot);
    // shop/frontend's node still gets secrets under the old root; shop/payments's already under the new one.
    await putWorkloadSecret(oldCa, 'shop', 'frontend');
    await putWorkloadSecret(newCa, 'shop', 'payments');
    placeApp(oldCa.view, '/shop/frontend', 'shop', 'frontend', ['agent-1']);
    placeApp(newCa.view, '/shop/payments', 'shop', 'payments', ['agent-2']);
    const a1 = await startAgent(oldCa, 'agent-1', oldDir, oldRoot + newRoot);
    const a2 = await startAgent(newCa, 'agent-2', newDir, oldRoot + newRoot);
    newAgent = a2.agent;
    await Promise.all([a1.synced, a2.synced]);
  });
  after(async () => {
    for (const a of agents) await a.stop();
    await oldCa?.close();
    await newCa?.close();
    for (const d of [oldDir, newDir]) await fs.rm(d, { recursive: true, force: true });
  });

  it("root-cert.pem (and envoy-sds-root.json) is the secret's root, then the other root of --ca-root", async () => {
    assert.equal(await rootFile(oldDir, 'shop', 'frontend'), oldRoot + newRoot);
    assert.equal(await rootFile(newDir, 'shop', 'payments'), newRoot + oldRoot, "its own root first, whatever --ca-root's order");
    assert.deepEqual(await bundleProblems(oldDir, 'shop', 'frontend', oldRoot + newRoot), []);
    assert.deepEqual(await bundleProblems(newDir, 'shop', 'payments', newRoot + oldRoot), []);
  });

  it('a workload under the old root and one under the new complete mutual TLS both ways; with one root each they refuse each other', async () => {
    const frontend = await tlsFilesOf(oldDir, 'shop', 'frontend');
    const payments = await tlsFilesOf(newDir, 'shop', 'payments');
    const seen = await mtlsHandshake(payments, frontend);
    assert.equal(seen.serverSawClient, 'URI:spiffe://cluster.local/ns/shop/sa/frontend');
    assert.equal(seen.clientSawServer, 'URI:spiffe://cluster.local/ns/shop/sa/payments');
    const back = await mtlsHandshake(frontend, payments);
    assert.equal(back.serverSawClient, 'URI:spiffe://cluster.local/ns/shop/sa/payments');

    await assert.rejects(mtlsHandshake(oneRoot(payments), oneRoot(frontend)), UNTRUSTED_ROOT, 'the client refuses the server on the other root');
    await assert.rejects(mtlsHandshake(oneRoot(payments), frontend), 'the server refuses the client on the other root');
    await assert.rejects(mtlsHandshake(payments, oneRoot(frontend)), UNTRUSTED_ROOT, 'the client refuses the server, whatever the server trusts');
  });

  it('`citadel cert verify` accepts such a directory, and refuses one whose root-cert.pem lacks the leaf’s root', async () => {
    for (const [dir, sa] of [[path.join(oldDir, 'shop', 'frontend'), 'frontend'], [path.join(newDir, 'shop', 'payments'), 'payments']]) {
      const r = citadel('cert', 'verify', dir);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`OK spiffe://cluster.local/ns/shop/sa/${sa},`));
    }
    const copy = tempDir();
    for (const f of ['cert-chain.pem', 'key.pem']) await fs.copyFile(path.join(newDir, 'shop', 'payments', f), path.join(copy, f));
    await fs.writeFile(path.join(copy, 'root-cert.pem'), oldRoot);
    const r = citadel('cert', 'verify', copy);
    assert.equal(r.code, 1);
    assert.match(r.err, /not signed by the given root/);
    await fs.rm(copy, { recursive: true, force: true });
  });

  it('a restart rewrites nothing; a change of --ca-root rewrites root-cert.pem once (one root: the secret’s root byte for byte)', async () => {
    const secret = (await newCa.store.getSecret('shop', 'istio.payments'))!;
    const data = await dataOf(newDir, 'shop', 'payments');
    await restartNewAgent(oldRoot + newRoot);
    assert.equal(await dataOf(newDir, 'shop', 'payments'), data, 'same --ca-root: the same version, not rewritten');

    await restartNewAgent(newRoot);
    assert.notEqual(await dataOf(newDir, 'shop', 'payments'), data);
    assert.equal(await rootFile(newDir, 'shop', 'payments'), secret.rootCertPem, 'one root: as the server’s secret has it');
    assert.deepEqual(await bundleProblems(newDir, 'shop', 'payments', newRoot), []);

    await restartNewAgent(oldRoot + newRoot);
    const bundled = await dataOf(newDir, 'shop', 'payments');
    assert.equal(await rootFile(newDir, 'shop', 'payments'), newRoot + oldRoot);
    await restartNewAgent(oldRoot + newRoot);
    assert.equal(await dataOf(newDir, 'shop', 'payments'), bundled, 'rewritten once, not on every start');
    assert.equal(await fs.readFile(path.join(newDir, 'shop', 'payments', 'cert-chain.pem'), 'utf8'), secret.certChainPem, 'the same certificate throughout');
  });

  it("a secret whose root-cert.pem is another root of --ca-root than its chain's is refused; the files stay", async () => {
    const before = await fs.readFile(path.join(newDir, 'shop', 'payments', 'cert-chain.pem'), 'utf8');
    const current = (await newCa.store.getSecret('shop', 'istio.payments'))!;
    const fresh = newCa.ca.issueKeyCertBundle(workload('shop', 'payments'));
    const applied = new Promise((resolve) => newAgent.once('synced', resolve));
    await newCa.store.putSecret({ ...current, certChainPem: fresh.certChainPem, keyPem: fresh.keyPem, rootCertPem: oldRoot, metadata: { ...current.metadata, serialNumber: `${current.metadata.serialNumber}0` } });
    await applied;
    assert.equal(await fs.readFile(path.join(newDir, 'shop', 'payments', 'cert-chain.pem'), 'utf8'), before);
    assert.equal(await rootFile(newDir, 'shop', 'payments'), newRoot + oldRoot);
    await newCa.store.putSecret({ ...current, metadata: { ...current.metadata, serialNumber: `${current.metadata.serialNumber}1` } });
  });

  it('a files-mode Envoy on that directory (the bootstrap’s envoy-sds-root.json) holds both roots, its own first', async (t) => {
    if (!envoyBinary()) return t.skip('no Envoy installed');
    // Nothing listens on the xDS address: the xds-grpc cluster's TLS context is all this reads.
    const config = envoyBootstrap({ identity: workload('shop', 'payments'), marathonId: '/shop/payments', certMode: 'files', capture: 'explicit', certsDir: path.join(newDir, 'shop', 'payments'), xdsAddress: { host: '127.0.0.1', port: 9 } });
    const envoy = await EnvoyProcess.start({ config, ready: 'admin', test: t });
    const serialOf = (pem: string) => normalSerial(new X509Certificate(pem).serialNumber);
    const certs = await envoy.waitFor('the xDS cluster’s certificates loaded', async () => {
      const c = await envoy.certs();
      return c.certificates.find((x) => x.ca_cert.length > 0 && x.cert_chain.length > 0);
    });
    assert.deepEqual(certs.ca_cert.map((c) => normalSerial(c.serial_number)), [serialOf(newRoot), serialOf(oldRoot)]);
    assert.equal(certs.cert_chain[0].subject_alt_names[0]?.uri, 'spiffe://cluster.local/ns/shop/sa/payments');
  });
});
