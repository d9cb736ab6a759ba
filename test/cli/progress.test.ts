/** Long store work shows progress on a terminal (a real pty, through script(1)) and is quiet when piped. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { CertificateAuthority } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { workloadIdentity } from '../../src/pki/identity';
import { openStore } from '../../src/store';
import { cliPath, tempDir } from '../helpers/pki';

const SECRETS = 300;

async function storeWithSecrets(url: string, n: number): Promise<void> {
  const s = await openStore(url);
  try {
    const ca = await CertificateAuthority.open(s, DEFAULT_CA_CONFIG);
    const b = ca.issueKeyCertBundle(workloadIdentity('cluster.local', 'prod', 'sa'));
    const metadata = { type: 'istio.io/key-and-cert' as const, serviceAccount: 'sa', spiffeId: 'spiffe://cluster.local/ns/prod/sa/sa', notBefore: b.notBefore.toISOString(), notAfter: b.notAfter.toISOString(), serialNumber: '01', updatedAt: new Date().toISOString() };
    for (let i = 0; i < n; i++) await s.putSecret({ namespace: 'prod', name: `istio.sa-${i}`, rootCertPem: b.rootCertPem, certChainPem: b.certChainPem, keyPem: b.keyPem, metadata });
  } finally {
    await s.close();
  }
}

const shell = (cmd: string) => spawnSync('bash', ['-c', cmd], { encoding: 'utf8' });
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

test('store migrate: progress rewritten in place on a terminal, ending on its own line; piped, only the result', async () => {
  const dir = tempDir();
  const from = `file:${dir}/from`;
  await storeWithSecrets(from, SECRETS);
  const migrate = (to: string) => `${quote(process.execPath)} ${quote(cliPath)} store migrate --from ${from} --to file:${dir}/${to}`;

  const piped = shell(`${migrate('piped')} 2>${dir}/err | cat; cat ${dir}/err >&2`);
  assert.equal(piped.status, 0, piped.stderr);
  assert.equal(piped.stderr, '', 'nothing on stderr when it is not a terminal');
  assert.deepEqual(piped.stdout.trim().split('\n'), [`migrated ${from} -> file:${dir}/piped: ${SECRETS} secrets copied, 0 unchanged, CA secret copied, 0 join tokens, 0 node records, 0 evictions, policy absent`]);

  const onTty = shell(`script -qec ${quote(migrate('tty'))} /dev/null`);
  assert.equal(onTty.status, 0, onTty.stdout);
  const updates = onTty.stdout.split('\r').filter((l) => /secrets: \d+ copied/.test(l));
  assert.ok(updates.length >= 1, `progress shown on the terminal: ${JSON.stringify(onTty.stdout.slice(0, 300))}`);
  assert.match(onTty.stdout, new RegExp(`\\r${SECRETS}/${SECRETS} secrets: ${SECRETS} copied, 0 unchanged\\x1b\\[K\\r?\\nmigrated `), 'the last figure is shown and the result starts a line of its own');
});

test('store rekey: progress on a terminal, quiet piped; an error still starts a line of its own', async () => {
  const dir = tempDir();
  const store = `file:${dir}/data`;
  await storeWithSecrets(store, 50);
  const kek = path.join(dir, 'kek');
  const cli = `${quote(process.execPath)} ${quote(cliPath)}`;
  assert.equal(shell(`${cli} store kek-generate ${kek}`).status, 0);
  const onTty = shell(`script -qec ${quote(`${cli} store rekey --store ${store} --new-kek ${kek}`)} /dev/null`);
  assert.equal(onTty.status, 0, onTty.stdout);
  assert.match(onTty.stdout, /\rre-sealed 50\/50 secrets\x1b\[K\r?\nrekeyed /);
  // Again without --old-kek: the keys are sealed now, nothing opens, nothing is written.
  const again = shell(`${cli} store rekey --store ${store} --new-kek ${path.join(dir, 'kek')}.missing 2>&1`);
  assert.equal(again.status, 2);
  assert.equal(again.stdout.split('\n').filter(Boolean).length, 1, again.stdout);
});
