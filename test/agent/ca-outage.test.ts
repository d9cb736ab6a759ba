import assert from 'node:assert/strict';
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { it } from 'node:test';
import { FileAgent } from '../../src/agent/file-agent';
import { parseCertificatePem } from '../../src/pki/certificate';
import { newJoinToken } from '../../src/server/join-token';
import { placeApp, putWorkloadSecret, startCaFixture } from '../server/fixtures';
import { bundleProblems } from './bundle-check';
import { waitFor } from '../helpers/wait';

it('CA outage and restart across a rotation: the files stay valid, the node certificate is renewed, the rotated secret arrives', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'citadel-outage-'));
  const certsDir = path.join(dir, 'certs');
  const config = { clockSkewMs: 0 };
  let f = await startCaFixture({ dir, config });
  const port = f.server.port;
  const place = () => placeApp(f.view, '/shop/payments', 'shop', 'payments', ['agent-1']);
  await putWorkloadSecret(f, 'shop', 'payments');
  place();
  const t = newJoinToken('agent-1', 60_000);
  await f.store.putJoinToken(t.record);
  const agent = new FileAgent({
    caAddress: f.address, caRootPem: f.ca.rootCertPem, joinToken: t.token, host: 'agent-1', certsDir,
    nodeCertTtlMs: 6000, backoff: { initialMs: 100, maxMs: 400 },
  });
  const renewals: string[] = [];
  agent.on('credential', (c) => renewals.push(parseCertificatePem(c.certChainPem).serialHex));
  try {
    await agent.start();
    await waitFor('first bundle', async () => (await bundleProblems(certsDir, 'shop', 'payments', f.ca.rootCertPem)).length === 0);
    const firstNodeCert = agent.nodeCredential!;
    const chainBefore = await fs.readFile(path.join(certsDir, 'shop', 'payments', 'cert-chain.pem'), 'utf8');

    // Outage: the CA goes away; meanwhile the secret controller rotates the secret in the store.
    await f.close();
    const down = await startCaFixture({ dir, config, port: 0 }); // a second CA process on the same store, not reachable by the agent
    await putWorkloadSecret(down, 'shop', 'payments');
    const rotated = (await down.store.getSecret('shop', 'istio.payments'))!.certChainPem;
    await down.close();
    assert.notEqual(rotated, chainBefore);

    // Through the renewal time (half of 6 s) the agent keeps the last valid files.
    await new Promise((r) => setTimeout(r, 3500));
    assert.deepEqual(await bundleProblems(certsDir, 'shop', 'payments', f.ca.rootCertPem), []);
    assert.equal(await fs.readFile(path.join(certsDir, 'shop', 'payments', 'cert-chain.pem'), 'utf8'), chainBefore);
    assert.equal(renewals.length, 1, 'no renewal while the CA is down');

    // The CA restarts on its port: the node renews before its certificate expires, and the feed delivers the rotation.
    f = await startCaFixture({ dir, config, port });
    place();
    await waitFor('node certificate renewed', () => renewals.length >= 2, 3000);
    assert.ok(agent.nodeCredential!.notAfter > firstNodeCert.notAfter);
    await waitFor('rotated bundle', async () => (await fs.readFile(path.join(certsDir, 'shop', 'payments', 'cert-chain.pem'), 'utf8')) === rotated, 3000);
    assert.deepEqual(await bundleProblems(certsDir, 'shop', 'payments', f.ca.rootCertPem), []);
  } finally {
    await agent.stop();
    await f.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
