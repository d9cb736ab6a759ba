/** Every read command answers `-o json` the same way, and a reader that goes away ends it quietly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { cliPath, tempDir } from '../helpers/pki';

function citadel(...args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function storeWithSecrets(n: number): { dir: string; store: string } {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  for (let i = 0; i < n; i++) {
    const r = citadel('cert', 'issue', '-n', 'prod', '-s', `sa-${i}`, '--out', path.join(dir, `b${i}`), '--store', store);
    assert.equal(r.code, 0, r.err);
  }
  return { dir, store };
}

test('-o json on ca init, cert inspect, store list, store get and token list is one JSON document; --json is the same', () => {
  const { dir, store } = storeWithSecrets(1);
  const ca = JSON.parse(citadel('ca', 'init', '--store', store, '-o', 'json').out);
  assert.equal(ca.status, 'existing');
  assert.deepEqual(JSON.parse(citadel('ca', 'init', '--store', store, '--json').out), ca);

  const inspect = JSON.parse(citadel('cert', 'inspect', path.join(dir, 'b0'), '-o', 'json').out);
  assert.equal(inspect.spiffeId, 'spiffe://cluster.local/ns/prod/sa/sa-0');

  const list = citadel('store', 'list', '--store', store, '-o', 'json');
  assert.equal(list.code, 0, list.err);
  assert.deepEqual(JSON.parse(list.out), []);

  const created = citadel('token', 'create', '--host', 'agent-1', '--store', store);
  assert.equal(created.code, 0, created.err);
  const tokens = JSON.parse(citadel('token', 'list', '--store', store, '-o', 'json').out);
  assert.equal(tokens.length, 1);
  assert.equal(tokens[0].host, 'agent-1');
  assert.equal(tokens[0].state, 'valid');
  assert.match(tokens[0].hash, /^[0-9a-f]{64}$/);
  assert.ok(!JSON.stringify(tokens).includes(created.out.trim()), 'the token itself is never listed');

  const bad = citadel('store', 'list', '--store', store, '-o', 'yaml');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /'yaml' is invalid.*text, json/);
});

test('store list and store get -o json carry the metadata and never the private key', async () => {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  const { openStore } = await import('../../src/store');
  const { CertificateAuthority } = await import('../../src/ca/authority');
  const { DEFAULT_CA_CONFIG } = await import('../../src/ca/config');
  const { workloadIdentity } = await import('../../src/pki/identity');
  const s = await openStore(store);
  try {
    const authority = await CertificateAuthority.open(s, DEFAULT_CA_CONFIG);
    const bundle = authority.issueKeyCertBundle(workloadIdentity('cluster.local', 'prod', 'payments'));
    await s.putSecret({
      namespace: 'prod',
      name: 'istio.payments',
      rootCertPem: bundle.rootCertPem,
      certChainPem: bundle.certChainPem,
      keyPem: bundle.keyPem,
      metadata: { type: 'istio.io/key-and-cert', serviceAccount: 'payments', spiffeId: 'spiffe://cluster.local/ns/prod/sa/payments', notBefore: bundle.notBefore.toISOString(), notAfter: bundle.notAfter.toISOString(), serialNumber: 'aa', updatedAt: new Date().toISOString() },
    });
  } finally {
    await s.close();
  }
  const list = citadel('store', 'list', '--store', store, '-o', 'json');
  assert.equal(list.code, 0, list.err);
  const rows = JSON.parse(list.out);
  assert.deepEqual(rows.map((r: { namespace: string; name: string; spiffeId: string }) => `${r.namespace}/${r.name} ${r.spiffeId}`), ['prod/istio.payments spiffe://cluster.local/ns/prod/sa/payments']);
  assert.ok(!list.out.includes('PRIVATE KEY'));
  const out = path.join(dir, 'got');
  const got = citadel('store', 'get', 'prod', 'payments', '--store', store, '--output', 'json', '-o', out);
  assert.equal(got.code, 0, got.err);
  const one = JSON.parse(got.out);
  assert.equal(one.version, 1);
  assert.equal(one.wrote, out);
  assert.ok(!got.out.includes('PRIVATE KEY'));
  const verified = citadel('cert', 'verify', out);
  assert.equal(verified.code, 0, verified.err);
});

test('a reader that closes early (token list | head -1) ends citadel with exit 0 and nothing on stderr', async () => {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  const { openStore } = await import('../../src/store');
  const { newJoinToken } = await import('../../src/server/join-token');
  const s = await openStore(store);
  try {
    // More than a pipe holds (64 KiB), so citadel is still writing when head has gone.
    for (let i = 0; i < 1500; i++) await s.putJoinToken(newJoinToken(`agent-${i}.example.internal`, 3_600_000).record);
  } finally {
    await s.close();
  }
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', `"${process.execPath}" "${cliPath}" token list --store ${store} | head -1`], { encoding: 'utf8' });
  assert.match(r.stdout, /^[0-9a-f]{12}  agent-/);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
});
