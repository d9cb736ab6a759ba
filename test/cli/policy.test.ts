/** `citadel policy apply|get|delete` as a person runs them: exit codes, stdout, stderr, and what the store holds after. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { parsePolicyText } from '../../src/mesh/policy';
import { cliPath, tempDir } from '../helpers/pki';

function citadel(...args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const POLICIES = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: api-health
  namespace: prod
spec:
  selector:
    matchLabels:
      app: api
  mtls:
    mode: UNSET
  portLevelMtls:
    8081:
      mode: DISABLE
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: mesh-mtls
  namespace: istio-system
spec:
  host: "*.marathon.mesos"
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
    loadBalancer:
      simple: ROUND_ROBIN
`;

const MESH = `apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: default
spec:
  peers:
  - mtls: {}
`;

const WEB = `apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: default
  namespace: default
spec:
  peers:
  - mtls:
      mode: PERMISSIVE
`;

/** A store URL (nothing applied yet), a directory holding POLICIES, and MESH and WEB in files of their own. */
function appliedStore() {
  const dir = tempDir();
  const files = path.join(dir, 'policies');
  mkdirSync(files);
  writeFileSync(path.join(files, 'mesh.yaml'), POLICIES);
  writeFileSync(path.join(dir, 'meshpolicy.yaml'), MESH);
  writeFileSync(path.join(dir, 'web.yaml'), WEB);
  const store = `file:${dir}/data`;
  return { dir, files, store };
}

/** The stored policy files, byte for byte. */
function stored(dir: string): string {
  const policies = path.join(dir, 'data', 'policies');
  return readdirSync(policies)
    .map((f) => `${f}:${readFileSync(path.join(policies, f), 'utf8')}`)
    .join('\n');
}

describe('citadel policy', () => {
  it('apply: one line per document, warnings on stderr; again: unchanged; -f repeated; --dry-run writes nothing', () => {
    const { dir, files, store } = appliedStore();
    const first = citadel('policy', 'apply', '-f', files, '--store', store);
    assert.equal(first.code, 0, first.err);
    assert.equal(first.out, 'peerauthentication istio-system/default created\npeerauthentication prod/api-health created\ndestinationrule istio-system/mesh-mtls created\n');
    assert.equal(
      first.err,
      `warning: ${path.join(files, 'mesh.yaml')}: document 3 (DestinationRule istio-system/mesh-mtls): spec.trafficPolicy.loadBalancer: accepted but ignored: citadel configures TLS only\n`,
    );
    const bytes = stored(dir);

    const dry = citadel('policy', 'apply', '-f', path.join(dir, 'meshpolicy.yaml'), '-f', files, '--dry-run', '--store', store);
    assert.equal(dry.code, 0, dry.err);
    assert.equal(dry.out, 'meshpolicy default created (dry run)\npeerauthentication istio-system/default unchanged (dry run)\npeerauthentication prod/api-health unchanged (dry run)\ndestinationrule istio-system/mesh-mtls unchanged (dry run)\n');
    assert.equal(stored(dir), bytes, 'a dry run writes nothing');

    const again = citadel('policy', 'apply', '-f', path.join(dir, 'meshpolicy.yaml'), '-f', files, '--store', store);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /^meshpolicy default created\npeerauthentication istio-system\/default unchanged\n/);

    writeFileSync(path.join(files, 'mesh.yaml'), POLICIES.replace('mode: STRICT', 'mode: PERMISSIVE'));
    const changed = citadel('policy', 'apply', '-f', files, '--store', store);
    assert.match(changed.out, /^peerauthentication istio-system\/default configured\npeerauthentication prod\/api-health unchanged\n/);
  });

  it('apply with a bad document: every problem on its own line naming file, document and field; exit 2; nothing applied', () => {
    const { dir, files, store } = appliedStore();
    assert.equal(citadel('policy', 'apply', '-f', files, '--store', store).code, 0);
    const bytes = stored(dir);
    writeFileSync(path.join(files, 'more.yaml'), `${WEB}---\n${POLICIES.replace('mode: STRICT', 'mode: STRICTT').replace('host:', 'hots:')}`);
    const bad = citadel('policy', 'apply', '-f', files, '--store', store);
    assert.equal(bad.code, 2);
    assert.equal(bad.out, '');
    const more = path.join(files, 'more.yaml');
    assert.deepEqual(bad.err.trimEnd().split('\n'), [
      `citadel: ${more}: document 2 (PeerAuthentication istio-system/default): spec.mtls.mode: "STRICTT" is not one of UNSET, DISABLE, PERMISSIVE, STRICT`,
      `citadel: ${more}: document 4 (DestinationRule istio-system/mesh-mtls): spec.hots: unknown field; DestinationRule spec has host, trafficPolicy, subsets, exportTo, workloadSelector (did you mean host?)`,
      `citadel: ${more}: document 4 (DestinationRule istio-system/mesh-mtls): spec.host: is required`,
      `citadel: ${more}: document 3 (PeerAuthentication prod/api-health): metadata.name: the same PeerAuthentication as ${path.join(files, 'mesh.yaml')} document 2; each kind/namespace/name may appear once`,
      'citadel: nothing applied (4 errors)',
    ]);
    assert.equal(stored(dir), bytes, 'the store is byte for byte as before');
    const missing = citadel('policy', 'apply', '-f', path.join(dir, 'nope.yaml'), '--store', store);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /^citadel: .*nope\.yaml: cannot read: ENOENT/);
    const none = citadel('policy', 'apply', '--store', store);
    assert.deepEqual([none.code, none.err], [2, 'citadel: policy apply needs -f FILE|DIR\n']);
  });

  it('get: a table of the default namespace (and MeshPolicies), -n, -A, a kind by any of its names, one by name', () => {
    const { dir, files, store } = appliedStore();
    for (const f of [files, path.join(dir, 'meshpolicy.yaml'), path.join(dir, 'web.yaml')]) assert.equal(citadel('policy', 'apply', '-f', f, '--store', store).code, 0);

    const all = citadel('policy', 'get', '-A', '--store', store);
    assert.equal(all.code, 0, all.err);
    const rows = all.out.trimEnd().split('\n').map((l) => l.split(/\s{2,}/));
    assert.deepEqual(rows.map((r) => r.slice(0, 4)), [
      ['KIND', 'NAMESPACE', 'NAME', 'MODE'],
      ['DestinationRule', 'istio-system', 'mesh-mtls', 'ISTIO_MUTUAL'],
      ['MeshPolicy', '-', 'default', 'STRICT'],
      ['PeerAuthentication', 'istio-system', 'default', 'STRICT'],
      ['PeerAuthentication', 'prod', 'api-health', 'UNSET 8081=DISABLE'],
      ['Policy', 'default', 'default', 'PERMISSIVE'],
    ]);
    assert.equal(rows[0][4], 'AGE');
    for (const r of rows.slice(1)) assert.match(r[4], /^\d+s$/, 'applied seconds ago');

    const defaults = citadel('policy', 'get', '--store', store);
    assert.deepEqual(defaults.out.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/)[0]), ['MeshPolicy', 'Policy']);
    const prod = citadel('policy', 'get', 'PA', '-n', 'prod', '--store', store);
    assert.deepEqual(prod.out.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/).slice(0, 3).join(' ')), ['PeerAuthentication prod api-health']);
    const rules = citadel('policy', 'get', 'DestinationRules', '-A', '--store', store);
    assert.equal(rules.out.trimEnd().split('\n').length, 2);
    const empty = citadel('policy', 'get', 'dr', '-n', 'web', '--store', store);
    assert.deepEqual([empty.code, empty.out], [0, '']);
    assert.match(empty.err, /^no policies in namespace web in file:/);

    const one = citadel('policy', 'get', 'peerauthentication', 'api-health', '-n', 'prod', '-o', 'json', '--store', store);
    assert.equal(one.code, 0, one.err);
    const doc = JSON.parse(one.out);
    assert.deepEqual([doc.kind, doc.metadata.namespace, doc.metadata.name, doc.spec.portLevelMtls], ['PeerAuthentication', 'prod', 'api-health', { 8081: { mode: 'DISABLE' } }]);
    assert.match(doc.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT/);

    const absent = citadel('policy', 'get', 'pa', 'api-health', '--store', store);
    assert.deepEqual([absent.code, absent.err], [2, `citadel: there is no peerauthentication default/api-health in ${store}; \`citadel policy get -A\` lists what there is\n`]);
    const kind = citadel('policy', 'get', 'virtualservice', '--store', store);
    assert.deepEqual([kind.code, kind.err], [2, 'citadel: unknown kind "virtualservice"; use peerauthentication (pa), destinationrule (dr), policy or meshpolicy\n']);
    const both = citadel('policy', 'get', '-A', '-n', 'prod', '--store', store);
    assert.deepEqual([both.code, both.err], [2, 'citadel: give -n NS or -A, not both\n']);
    const format = citadel('policy', 'get', '-o', 'xml', '--store', store);
    assert.equal(format.code, 2);
  });

  it('get -o yaml and -o json print what apply takes back unchanged', () => {
    const { dir, files, store } = appliedStore();
    for (const f of [files, path.join(dir, 'meshpolicy.yaml'), path.join(dir, 'web.yaml')]) assert.equal(citadel('policy', 'apply', '-f', f, '--store', store).code, 0);
    const bytes = stored(dir);
    for (const format of ['yaml', 'json']) {
      const got = citadel('policy', 'get', '-A', '-o', format, '--store', store);
      assert.equal(got.code, 0, got.err);
      assert.equal(parsePolicyText(got.out, `out.${format}`).documents.length, 5);
      const file = path.join(dir, `out.${format}`);
      writeFileSync(file, got.out);
      const back = citadel('policy', 'apply', '-f', file, '--store', store);
      assert.equal(back.code, 0, back.err);
      assert.deepEqual(back.out.trimEnd().split('\n').map((l) => l.split(' ').pop()), Array(5).fill('unchanged'), back.out);
      assert.equal(back.err, '', 'the stored form has no ignored fields');
    }
    assert.equal(stored(dir), bytes, 'the set is as before: same version, same bytes');

    // Into an empty store, the copy keeps each document's creationTimestamp (the order "oldest wins" uses).
    const copy = `file:${tempDir()}/data`;
    assert.equal(citadel('policy', 'apply', '-f', path.join(dir, 'out.yaml'), '--store', copy).code, 0);
    assert.equal(citadel('policy', 'get', '-A', '-o', 'yaml', '--store', copy).out, readFileSync(path.join(dir, 'out.yaml'), 'utf8'));
  });

  it('delete KIND NAME [-n NS] and -f FILE; what is not there: exit 2, one line, nothing deleted', () => {
    const { dir, files, store } = appliedStore();
    for (const f of [files, path.join(dir, 'meshpolicy.yaml'), path.join(dir, 'web.yaml')]) assert.equal(citadel('policy', 'apply', '-f', f, '--store', store).code, 0);

    const pa = citadel('policy', 'delete', 'pa', 'api-health', '-n', 'prod', '--store', store);
    assert.deepEqual([pa.code, pa.out, pa.err], [0, 'peerauthentication prod/api-health deleted\n', '']);
    const mesh = citadel('policy', 'delete', 'MeshPolicy', 'default', '--store', store);
    assert.deepEqual([mesh.code, mesh.out], [0, 'meshpolicy default deleted\n']);

    const bytes = stored(dir);
    const again = citadel('policy', 'delete', 'pa', 'api-health', '-n', 'prod', '--store', store);
    assert.deepEqual([again.code, again.out], [2, '']);
    assert.equal(again.err, `citadel: there is no peerauthentication prod/api-health in ${store}; nothing deleted (\`citadel policy get -A\` lists what there is)\n`);
    const wrongNs = citadel('policy', 'delete', 'policy', 'default', '--store', store);
    assert.equal(wrongNs.code, 0, 'the Policy default/default is there');
    const bytesAfter = stored(dir);
    assert.notEqual(bytesAfter, bytes);

    // -f: the file names three documents; one is gone already, so none is deleted.
    const byFile = citadel('policy', 'delete', '-f', files, '--store', store);
    assert.equal(byFile.code, 2);
    assert.match(byFile.err, /^citadel: there is no peerauthentication prod\/api-health in .*; nothing deleted/, 'no warnings about fields: delete reads only names');
    assert.equal(stored(dir), bytesAfter);
    writeFileSync(path.join(files, 'mesh.yaml'), POLICIES.split('---\n').filter((d) => !d.includes('api-health')).join('---\n'));
    const ok = citadel('policy', 'delete', '-f', files, '--store', store);
    assert.deepEqual([ok.code, ok.out], [0, 'peerauthentication istio-system/default deleted\ndestinationrule istio-system/mesh-mtls deleted\n']);
    assert.equal(citadel('policy', 'get', '-A', '-o', 'yaml', '--store', store).out, '', 'the store is empty');

    assert.deepEqual(citadel('policy', 'delete', 'pa', '--store', store).code, 2);
    assert.match(citadel('policy', 'delete', 'pa', 'x', '-n', 'Bad_NS', '--store', store).err, /^citadel: -n: "Bad_NS" is not a namespace/);
  });
});
