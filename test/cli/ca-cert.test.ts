import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { cliPath, tempDir } from '../helpers/pki';

function citadel(...args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('ca init creates the root once; a second run shows the same root', () => {
  const store = `file:${tempDir()}/data`;
  const first = citadel('ca', 'init', '--store', store, '--json');
  assert.equal(first.code, 0, first.err);
  const a = JSON.parse(first.out);
  assert.equal(a.status, 'created');
  assert.equal(a.subject, 'O=cluster.local');
  const second = JSON.parse(citadel('ca', 'init', '--store', store, '--json').out);
  assert.equal(second.status, 'existing');
  assert.equal(second.sha256, a.sha256);
});

test('cert issue writes a bundle that cert verify and cert inspect accept', () => {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  const out = path.join(dir, 'bundle');
  const issued = citadel('cert', 'issue', '--namespace', 'prod', '--service-account', 'payments', '--out', out, '--ttl', '2h', '--store', store);
  assert.equal(issued.code, 0, issued.err);
  assert.match(issued.out, /issued spiffe:\/\/cluster.local\/ns\/prod\/sa\/payments/);
  assert.equal(statSync(path.join(out, 'key.pem')).mode & 0o777, 0o600);
  const verified = citadel('cert', 'verify', out);
  assert.equal(verified.code, 0, verified.err);
  assert.match(verified.out, /OK spiffe:\/\/cluster.local\/ns\/prod\/sa\/payments/);
  const info = JSON.parse(citadel('cert', 'inspect', path.join(out, 'cert-chain.pem'), '--json').out);
  assert.equal(info.spiffeId, 'spiffe://cluster.local/ns/prod/sa/payments');
  assert.equal(info.keyType, 'EC P-256');
  assert.equal(info.issuer, 'O=cluster.local');
  const hours = (Date.parse(info.notAfter) - Date.parse(info.notBefore)) / 3_600_000;
  assert.ok(hours > 2 && hours < 2.1, `lifetime ${hours}h`);
});

test('cert verify exits 1 with the reason when the key belongs to another bundle or the root differs', () => {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  assert.equal(citadel('cert', 'issue', '-n', 'prod', '-s', 'a', '-o', a, '--store', store).code, 0);
  assert.equal(citadel('cert', 'issue', '-n', 'prod', '-s', 'b', '-o', b, '--store', store).code, 0);
  copyFileSync(path.join(b, 'key.pem'), path.join(a, 'key.pem'));
  const mismatch = citadel('cert', 'verify', a);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.err, /key.pem does not match the certificate/);
  const other = path.join(dir, 'other');
  assert.equal(citadel('cert', 'issue', '-n', 'prod', '-s', 'c', '-o', other, '--store', `file:${dir}/other-data`).code, 0);
  writeFileSync(path.join(b, 'root-cert.pem'), readFileSync(path.join(other, 'root-cert.pem')));
  const wrongRoot = citadel('cert', 'verify', b);
  assert.equal(wrongRoot.code, 1);
  assert.match(wrongRoot.err, /not signed by the given root/);
});

test('bad input: one line on stderr, exit 2, nothing written', () => {
  const dir = tempDir();
  const bad = citadel('cert', 'issue', '-n', 'Prod_1', '-s', 'api', '-o', path.join(dir, 'x'), '--store', `file:${dir}/data`);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^citadel: namespace "Prod_1" must be a DNS label/);
  assert.equal(bad.err.trim().split('\n').length, 1);
  assert.throws(() => statSync(path.join(dir, 'x')));
  const ttl = citadel('cert', 'issue', '-n', 'prod', '-s', 'api', '-o', path.join(dir, 'y'), '--ttl', '100d', '--store', `file:${dir}/data`);
  assert.equal(ttl.code, 2);
  assert.match(ttl.err, /above the maximum/);
  const unknown = citadel('ca', 'init', '--no-such-flag');
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown option '--no-such-flag'/);
  const plugged = citadel('ca', 'init', '--signing-cert', '/nonexistent');
  assert.equal(plugged.code, 2);
  assert.match(plugged.err, /needs all of --signing-cert, --signing-key and --root-cert/);
});

test('store list and store get show the secrets; get -o writes the PEM files a sidecar would see', async () => {
  const { FileStore } = await import('../../src/store/file-store');
  const { SECRET_TYPE } = await import('../../src/store/store');
  const { bundleFor, testCa } = await import('../helpers/pki');
  const dir = tempDir();
  const ca = testCa();
  const store = await FileStore.open(path.join(dir, 'data'));
  for (const [ns, sa] of [['prod', 'api'], ['prod', 'default'], ['qa', 'api']]) {
    const b = bundleFor(ca, ns, sa);
    const spiffeId = `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
    await store.putSecret({ namespace: ns, name: `istio.${sa}`, certChainPem: b.certChainPem, keyPem: b.keyPem, rootCertPem: b.rootCertPem, metadata: { type: SECRET_TYPE, serviceAccount: sa, spiffeId, notBefore: b.notBefore.toISOString(), notAfter: b.notAfter.toISOString(), serialNumber: b.serialHex, updatedAt: new Date().toISOString() } });
  }
  await store.close();
  const url = `file:${dir}/data`;
  const listed = citadel('store', 'list', '--store', url, '--namespace', 'prod');
  assert.equal(listed.code, 0, listed.err);
  assert.deepEqual(listed.out.trim().split('\n').map((l) => l.split(/\s+/)[0]), ['prod/istio.api', 'prod/istio.default', '2']);
  const out = path.join(dir, 'certs');
  const got = citadel('store', 'get', 'qa', 'api', '--store', url, '-o', out);
  assert.equal(got.code, 0, got.err);
  assert.match(got.out, /spiffe:\/\/cluster.local\/ns\/qa\/sa\/api/);
  assert.equal(statSync(path.join(out, 'key.pem')).mode & 0o777, 0o600);
  const verified = citadel('cert', 'verify', out);
  assert.equal(verified.code, 0, verified.err);
  assert.match(verified.out, /OK spiffe:\/\/cluster.local\/ns\/qa\/sa\/api/);
  const missing = citadel('store', 'get', 'qa', 'nope', '--store', url);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /there is no secret qa\/istio.nope in file:/);
});

test('ca root prints the root certificate from the store without the KEK, its fingerprint on stderr; --out writes it 0644', () => {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  const kek = path.join(dir, 'kek');
  assert.equal(citadel('store', 'kek-generate', kek).code, 0);
  const init = JSON.parse(citadel('ca', 'init', '--store', store, '--kek-file', kek, '-o', 'json').out);
  const printed = citadel('ca', 'root', '--store', store);
  assert.equal(printed.code, 0, printed.err);
  assert.match(printed.out, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  assert.ok(!printed.out.includes('PRIVATE KEY'));
  assert.equal(printed.err.trim(), `root ${init.subject}, sha256 ${init.sha256}, expires ${init.notAfter}`);
  const out = path.join(dir, 'root-cert.pem');
  const written = citadel('ca', 'root', '--store', store, '--out', out);
  assert.equal(written.code, 0, written.err);
  assert.equal(readFileSync(out, 'utf8'), printed.out);
  assert.equal(statSync(out).mode & 0o777, 0o644);
  const none = citadel('ca', 'root', '--store', `file:${dir}/empty`);
  assert.equal(none.code, 2);
  assert.match(none.err, /has no CA root yet; create it with `citadel ca init/);
});
