/**
 * A change of the CA's root under an SDS-mode agent, done as docs/operations.md says: both roots
 * in --ca-root and an unspent join token first, then the CA restarted with another root. With the
 * streams open, every one of them (v3 and v2, Istio's and SPIRE's names) gets ROOTCA with the new
 * root first and the old one still in it, and a certificate under the new root, without the
 * agent restarting.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { checkCredential, NodeCredentialFile } from '../../src/agent/node-credential';
import { NodeAgent } from '../../src/agent/node-agent';
import { CertificateAuthority } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { MarathonView } from '../../src/marathon/view';
import { checkBundle } from '../../src/pki/bundle';
import { newJoinToken } from '../../src/server/join-token';
import { FileStore } from '../../src/store/file-store';
import { CaFixture, credentialFor, node, placeApp, startCaFixture, workload } from '../server/fixtures';
import { EnvoyProcess, envoyBinary } from '../helpers/envoy';
import { tempDir } from '../helpers/pki';
import { normalSerial, serverSidecar, socketOf } from './sds-envoy-fixtures';
import { SdsResponse, SdsStream, SdsTestClient } from '../helpers/sds-client';

const issued = async (f: CaFixture) => (await f.registry.getSingleMetric('citadel_server_success_cert_issuance_count')!.get()).values[0]?.value ?? 0;

/** Reads and ACKs a stream's responses until one holds what `wanted` looks for. */
async function until(s: SdsStream, names: string[], wanted: (r: SdsResponse) => boolean): Promise<SdsResponse> {
  for (;;) {
    const r = await s.next(20_000);
    s.ack(r, names);
    if (wanted(r)) return r;
  }
}

const chainsTo = (r: SdsResponse, root: string, ns: string, sa: string) => {
  const cert = r.secrets.find((x) => x.certificateChain);
  return cert !== undefined && checkBundle({ certChainPem: cert.certificateChain!, keyPem: cert.privateKey! }, { trustedRootPem: root, expected: workload(ns, sa) }).ok;
};

describe('the CA’s root changes under an SDS-mode agent with open streams', () => {
  const view = new MarathonView();
  let first: CaFixture;
  let second: CaFixture | undefined;
  let agent: NodeAgent;
  let oldRoot: string;
  let newRoot: string;
  let dir2: string;
  let envoy: EnvoyProcess | undefined;
  const clients: SdsTestClient[] = [];
  const sdsDir = tempDir();
  const identities = [['shop', 'web'], ['shop', 'pay']] as const;

  before(async () => {
    first = await startCaFixture({ rateLimit: { ratePerSecond: 0, burst: 0 }, view });
    oldRoot = first.ca.rootCertPem;
    for (const [ns, sa] of identities) placeApp(view, `/${ns}/${sa}`, ns, sa, ['agent-1']);
    // The CA to come: another self-signed root, and (step 1) the join token that admits the node to it.
    dir2 = tempDir();
    const store2 = await FileStore.open(path.join(dir2, 'store'));
    newRoot = (await CertificateAuthority.open(store2, DEFAULT_CA_CONFIG)).rootCertPem;
    const token = newJoinToken('agent-1', 600_000);
    await store2.putJoinToken(token.record);
    await store2.close();
    assert.notEqual(newRoot, oldRoot);
    // The node certificate an agent started earlier left in its state directory, under the old root.
    const stateDir = tempDir();
    const cred = credentialFor(first.ca, node('agent-1'));
    await new NodeCredentialFile(stateDir).save(checkCredential(cred.keyPem, cred.certChainPem, oldRoot, node('agent-1')));
    agent = new NodeAgent({
      caAddress: first.address, caRootPem: oldRoot + newRoot, joinToken: token.token, host: 'agent-1', stateDir, registry: new Registry(),
      sds: { sdsDir, rootChangeSpreadMs: 1000 }, backoff: { initialMs: 50, maxMs: 500 },
    });
    await agent.start();
    // A real Envoy on shop/web's socket too, when one is installed: its /certs after the change.
    if (envoyBinary()) envoy = await EnvoyProcess.start({ config: serverSidecar(socketOf(sdsDir, 'shop', 'web'), 9) });
  });
  after(async () => {
    await envoy?.stop();
    for (const c of clients) c.close();
    await agent?.stop();
    await first?.close().catch(() => undefined);
    await second?.close();
  });

  it('pushes ROOTCA (new root first, old one kept) and a certificate under the new root on every stream, v3 and v2', async (t) => {
    const opened: Array<{ ns: string; sa: string; names: string[]; stream: SdsStream; first: SdsResponse }> = [];
    for (const [ns, sa] of identities) {
      const c = new SdsTestClient(path.join(sdsDir, ns, sa, 'socket'));
      clients.push(c);
      for (const api of ['v3', 'v2'] as const) {
        for (const names of [['default'], ['ROOTCA'], [`spiffe://cluster.local/ns/${ns}/sa/${sa}`], ['spiffe://cluster.local'], []]) {
          const stream = c.open(names, api);
          const r = await stream.next();
          stream.ack(r, names);
          opened.push({ ns, sa, names, stream, first: r });
        }
      }
    }
    for (const o of opened) {
      for (const s of o.first.secrets) {
        if (s.trustedCa !== undefined) assert.equal(s.trustedCa, oldRoot + newRoot, 'before: both roots of --ca-root, the CA’s current (old) one first');
        else assert.ok(chainsTo(o.first, oldRoot, o.ns, o.sa), 'before: the certificate is under the old root');
      }
    }

    const port = first.server.port;
    await first.close();
    second = await startCaFixture({ dir: dir2, port, view, rateLimit: { ratePerSecond: 0, burst: 0 } });
    assert.equal(second.ca.rootCertPem, newRoot);

    // What every stream receives once the agent follows the new CA, read as Envoy would (ACKing each).
    const seen = await Promise.all(opened.map(async (o) => {
      const wantsRoot = o.names.length === 0 || o.names.some((n) => n === 'ROOTCA' || n === 'spiffe://cluster.local');
      const wantsCert = o.names.length === 0 || !wantsRoot;
      let root: string | undefined;
      let certUnderNew = false;
      let firstAfter: SdsResponse | undefined;
      await until(o.stream, o.names, (r) => {
        firstAfter ??= r;
        for (const s of r.secrets) if (s.trustedCa !== undefined) root = s.trustedCa;
        if (chainsTo(r, newRoot, o.ns, o.sa)) certUnderNew = true;
        return (!wantsRoot || root?.startsWith(newRoot) === true) && (!wantsCert || certUnderNew);
      });
      return { o, root, wantsRoot, firstAfter: firstAfter! };
    }));
    // Trust before use: the new root reaches the proxies before any certificate under it.
    for (const { o, firstAfter } of seen.filter((x) => x.o.names.length === 0)) {
      const tag = `${o.stream.api} [] (a wildcard stream: every response holds both)`;
      assert.equal(firstAfter.secrets.find((x) => x.name === 'ROOTCA')?.trustedCa, newRoot + oldRoot, `${tag}: the first push after the change has the new ROOTCA`);
      assert.ok(chainsTo(firstAfter, oldRoot, o.ns, o.sa), `${tag}: ...while the certificate is still the one under the old root`);
    }
    for (const { o, root, wantsRoot } of seen) {
      if (!wantsRoot) continue;
      assert.equal(root, newRoot + oldRoot, `${o.stream.api} ${JSON.stringify(o.names)}: ROOTCA is the new root, then the old one`);
    }
    assert.equal(seen.filter((s) => s.wantsRoot).length, 12, 'ROOTCA and spiffe://cluster.local, each identity, v2, v3 and both names');

    // The overlap: a leaf still under the old root (a peer not yet renewed) verifies against the bundle served now.
    const oldLeaf = credentialFor(first.ca, workload('shop', 'other'));
    assert.deepEqual(checkBundle(oldLeaf, { trustedRootPem: seen.find((s) => s.wantsRoot)!.root, expected: workload('shop', 'other') }).problems, []);
    assert.equal(await issued(second), 1 + identities.length, 'the node admitted again with its token, then one certificate per identity, however many streams');
    assert.equal(agent.nodeCredential?.rootCertPem, newRoot);
    assert.ok(opened.every((o) => o.stream.pending === 0), 'nothing more: no push loop');
    for (const [ns, sa] of identities) {
      const current = agent.workloadCerts!.current({ namespace: ns, serviceAccount: sa })!;
      assert.equal(current.rootCertPem, newRoot);
    }
    if (!envoy) return t.diagnostic('no Envoy installed: /certs not checked');
    const web = agent.workloadCerts!.current({ namespace: 'shop', serviceAccount: 'web' })!;
    const certs = await envoy.waitFor('Envoy on the new certificate', async () => {
      const c = await envoy!.certs();
      return c.certificates.length === 1 && normalSerial(c.certificates[0].cert_chain[0]?.serial_number ?? '') === normalSerial(web.serialHex) && c;
    }, 20_000);
    const serialOf = (pem: string) => normalSerial(new X509Certificate(pem).serialNumber);
    assert.deepEqual(certs.certificates[0].ca_cert.map((c) => normalSerial(c.serial_number)), [serialOf(newRoot), serialOf(oldRoot)], 'Envoy /certs: the new root, and the old one kept');
  });
});
