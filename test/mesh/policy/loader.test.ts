import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPolicyFiles, PolicyError } from '../../../src/mesh/policy';

const pa = (name: string, extra = ''): string =>
  `apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: prod}\nspec: {mtls: {mode: STRICT}}\n${extra}`;

async function rejection(p: Promise<unknown>): Promise<PolicyError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PolicyError, `not a PolicyError: ${String(err)}`);
    return err;
  }
  assert.fail('loaded without error');
}

describe('loadPolicyFiles: -f FILE|DIR', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'citadel-policy-'));
    fs.writeFileSync(path.join(dir, 'b.yaml'), `${pa('b')}---\n${pa('b2')}`);
    fs.writeFileSync(path.join(dir, 'a.yml'), pa('a', 'status: {}\n'));
    fs.writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'c', namespace: 'prod' } }));
    fs.writeFileSync(path.join(dir, 'README.md'), 'not a policy: {');
    fs.mkdirSync(path.join(dir, 'nested.yaml'));
    fs.writeFileSync(path.join(dir, 'nested.yaml', 'd.yaml'), pa('d'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a directory: its *.yaml, *.yml and *.json in name order, not recursing, other files skipped', async () => {
    const { documents, warnings } = await loadPolicyFiles([dir]);
    assert.deepEqual(
      documents.map((d) => d.metadata.name),
      ['a', 'b', 'b2', 'c'],
    );
    assert.deepEqual(warnings, [`${path.join(dir, 'a.yml')}: document 1 (PeerAuthentication prod/a): status: accepted but ignored: status is written by the control plane`]);
  });

  it('files and directories mixed, each message naming the file as given', async () => {
    const { documents } = await loadPolicyFiles([path.join(dir, 'nested.yaml'), path.join(dir, 'c.json')]);
    assert.deepEqual(
      documents.map((d) => d.metadata.name),
      ['d', 'c'],
    );
  });

  it('a missing path is a PolicyError, and nothing is returned', async () => {
    const missing = path.join(dir, 'missing.yaml');
    const err = await rejection(loadPolicyFiles([dir, missing]));
    assert.equal(err.problems.length, 1);
    assert.match(err.problems[0], new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read: ENOENT`));
  });

  it('one bad file fails the whole set; the same document in two files is a conflict', async () => {
    const bad = path.join(dir, 'nested.yaml', 'zz-bad.yaml');
    fs.writeFileSync(bad, pa('e').replace('STRICT', 'STRICTT'));
    const dup = path.join(dir, 'nested.yaml', 'zz-dup.yaml');
    fs.writeFileSync(dup, pa('d'));
    try {
      const err = await rejection(loadPolicyFiles([path.join(dir, 'nested.yaml')]));
      assert.deepEqual(err.problems, [
        `${bad}: document 1 (PeerAuthentication prod/e): spec.mtls.mode: "STRICTT" is not one of UNSET, DISABLE, PERMISSIVE, STRICT`,
        `${dup}: document 1 (PeerAuthentication prod/d): metadata.name: the same PeerAuthentication as ${path.join(dir, 'nested.yaml', 'd.yaml')} document 1; each kind/namespace/name may appear once`,
      ]);
    } finally {
      fs.rmSync(bad);
      fs.rmSync(dup);
    }
  });
});
