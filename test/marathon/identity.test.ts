import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MarathonView } from '../../src/marathon/view';
import { workloadIdentityOf, type InvalidWorkload, type Workload } from '../../src/marathon/workload';

describe('workloadIdentityOf (the Identity model)', () => {
  const ok: Array<[string, string, Record<string, string> | undefined, string, string]> = [
    ['/prod/payments/api', 'app', undefined, 'prod', 'default'],
    ['/api', 'app', undefined, 'default', 'default'],
    ['api', 'app', undefined, 'default', 'default'],
    ['/prod/api', 'pod', { 'istio.io/service-account': 'payments' }, 'prod', 'payments'],
    ['/prod/api', 'app', { 'istio.io/namespace': 'billing' }, 'billing', 'default'],
    ['/api', 'app', { 'istio.io/namespace': 'edge', 'istio.io/service-account': 'gw.edge' }, 'edge', 'gw.edge'],
    ['/a1/b', 'app', {}, 'a1', 'default'],
    ['/' + 'n'.repeat(63) + '/x', 'app', undefined, 'n'.repeat(63), 'default'],
  ];
  for (const [id, kind, labels, ns, sa] of ok) {
    it(`${kind} ${id.slice(0, 40)} ${JSON.stringify(labels ?? {})} -> ${ns.slice(0, 20)}/${sa}`, () => {
      assert.deepEqual(workloadIdentityOf(kind as 'app' | 'pod', id, labels), { namespace: ns, serviceAccount: sa });
    });
  }

  const bad: Array<[string, Record<string, string> | undefined, RegExp]> = [
    ['/Prod/api', undefined, /namespace "Prod"/],
    ['/prod.eu/api', undefined, /namespace "prod.eu"/],
    ['/' + 'n'.repeat(64) + '/x', undefined, /at most 63/],
    ['/prod/api', { 'istio.io/namespace': 'Bad_NS' }, /label istio.io\/namespace/],
    ['/prod/api', { 'istio.io/namespace': '' }, /namespace ""/],
    ['/prod/api', { 'istio.io/service-account': 'Payments' }, /service account "Payments"/],
    ['/prod/api', { 'istio.io/service-account': 'a..b' }, /service account/],
    ['/prod/api', { 'istio.io/service-account': '-x' }, /service account/],
    ['/prod/api', { 'istio.io/service-account': 'x'.repeat(64) }, /service account/],
    ['/', undefined, /no path segment/],
  ];
  for (const [id, labels, reason] of bad) {
    it(`rejects ${id.slice(0, 30)} ${JSON.stringify(labels ?? {}).slice(0, 40)} without renaming`, () => {
      const r = workloadIdentityOf('app', id, labels);
      assert.ok('error' in r, `expected an error, got ${JSON.stringify(r)}`);
      assert.match(r.error, reason);
    });
  }
});

describe('MarathonView', () => {
  const app = (id: string, ns: string, sa: string, hosts: Array<[string, string]>): Workload => ({
    kind: 'app', id, namespace: ns, serviceAccount: sa, instances: hosts.map(([host, state], i) => ({ id: `${id}.${i}`, host, state })),
  });

  it('indexes accounts and hosts, counts only live instances, and forgets removed workloads', () => {
    const lines: string[] = [];
    const view = new MarathonView();
    let changes = 0;
    view.onChange(() => changes++);
    const bad: InvalidWorkload = { kind: 'pod', id: '/Bad/x', reason: 'namespace "Bad" must be a DNS label' };
    view.replaceAll([
      app('/prod/a', 'prod', 'payments', [['h1', 'TASK_RUNNING'], ['h2', 'TASK_KILLED']]),
      app('/prod/b', 'prod', 'default', [['h2', 'TASK_STAGING']]),
      app('/dev/c', 'dev', 'web', []),
      bad,
    ]);
    void lines;
    assert.equal(changes, 1);
    assert.deepEqual(
      [...view.desiredAccounts()].map(([ns, sas]) => [ns, [...sas].sort()]).sort(),
      [['dev', ['default', 'web']], ['prod', ['default', 'payments']]],
    );
    assert.deepEqual(view.identitiesOnHost('h1'), [{ namespace: 'prod', serviceAccount: 'payments' }]);
    assert.deepEqual(view.identitiesOnHost('h2'), [{ namespace: 'prod', serviceAccount: 'default' }]);
    assert.deepEqual([...view.hostsOf({ namespace: 'prod', serviceAccount: 'payments' })], ['h1']);
    assert.deepEqual(view.invalid(), [bad]);
    assert.equal(view.invalidWorkloadCount(), 1);

    assert.equal(view.put('app', '/prod/a', undefined), true);
    assert.equal(changes, 2);
    assert.deepEqual(view.identitiesOnHost('h1'), []);
    assert.deepEqual([...view.desiredAccounts().get('prod')!].sort(), ['default']);
    // the same entry again is no change and no notification
    assert.equal(view.put('app', '/prod/b', app('/prod/b', 'prod', 'default', [['h2', 'TASK_STAGING']])), false);
    assert.equal(changes, 2);
    // a group re-read replaces only what lies under the group
    view.replaceGroup('/dev', []);
    assert.equal(view.desiredAccounts().has('dev'), false);
    assert.equal(view.desiredAccounts().has('prod'), true);
  });

  it('exports the invalid-workload gauge through a registry', async () => {
    const { Registry } = await import('prom-client');
    const registry = new Registry();
    const view = new MarathonView({ registry });
    view.replaceAll([{ kind: 'app', id: '/X/y', reason: 'bad' }, { kind: 'app', id: '/Z/y', reason: 'bad' }]);
    const text = await registry.metrics();
    assert.match(text, /citadel_marathon_invalid_workloads 2/);
    assert.match(text, /citadel_marathon_invalid_workloads_reported_total 2/);
  });
});
