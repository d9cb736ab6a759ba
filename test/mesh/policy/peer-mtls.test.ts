import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolvePeerMtls, type EffectiveMtlsMode, type PolicyDocument, type PolicyWorkload } from '../../../src/mesh/policy';
import { api, at, destinationRule, meshPolicy, namespacePolicy, peerAuthentication, targetPolicy } from './fixtures';

interface Row {
  name: string;
  policies: PolicyDocument[];
  /** Default 8080. */
  port?: number;
  workload?: PolicyWorkload;
  rootNamespace?: string;
  want: EffectiveMtlsMode;
}

const strictNs = peerAuthentication('prod', 'default', { mtls: 'STRICT' });
const selectApi = { app: 'api' };

const rows: Row[] = [
  // defaults and the mesh scope
  { name: 'no policy at all is PERMISSIVE', policies: [], want: 'PERMISSIVE' },
  { name: 'MeshPolicy STRICT', policies: [meshPolicy('STRICT')], want: 'STRICT' },
  { name: 'MeshPolicy PERMISSIVE', policies: [meshPolicy('PERMISSIVE')], want: 'PERMISSIVE' },
  { name: 'MeshPolicy without peers is DISABLE', policies: [meshPolicy(undefined)], want: 'DISABLE' },
  { name: 'PeerAuthentication without selector in istio-system is mesh-wide', policies: [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })], want: 'STRICT' },
  { name: 'a mesh-wide UNSET is PERMISSIVE', policies: [peerAuthentication('istio-system', 'default', { mtls: 'UNSET' })], want: 'PERMISSIVE' },
  {
    name: 'a configured root namespace replaces istio-system',
    policies: [peerAuthentication('mesh-root', 'default', { mtls: 'STRICT' })],
    rootNamespace: 'mesh-root',
    want: 'STRICT',
  },
  {
    name: 'istio-system is an ordinary namespace when another root is configured',
    policies: [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })],
    rootNamespace: 'mesh-root',
    want: 'PERMISSIVE',
  },
  {
    name: 'mesh scope: the older of MeshPolicy and root PeerAuthentication wins',
    policies: [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }, at(2)), meshPolicy('PERMISSIVE', at(1))],
    want: 'PERMISSIVE',
  },
  {
    name: 'mesh scope: ... and the other way round',
    policies: [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }, at(1)), meshPolicy('PERMISSIVE', at(2))],
    want: 'STRICT',
  },

  // the namespace scope
  { name: 'namespace PeerAuthentication over the mesh', policies: [meshPolicy('STRICT'), peerAuthentication('prod', 'default', { mtls: 'DISABLE' })], want: 'DISABLE' },
  { name: 'namespace Policy default over MeshPolicy', policies: [meshPolicy(undefined), namespacePolicy('prod', 'STRICT')], want: 'STRICT' },
  { name: 'namespace Policy default without peers is DISABLE', policies: [meshPolicy('STRICT'), namespacePolicy('prod', undefined)], want: 'DISABLE' },
  { name: 'namespace UNSET inherits the mesh', policies: [meshPolicy('STRICT'), peerAuthentication('prod', 'default', { mtls: 'UNSET' })], want: 'STRICT' },
  { name: "another namespace's policy does not apply", policies: [meshPolicy('STRICT'), peerAuthentication('staging', 'default', { mtls: 'DISABLE' })], want: 'STRICT' },
  {
    name: 'namespace scope: the oldest of Policy default and PeerAuthentication wins',
    policies: [namespacePolicy('prod', 'STRICT', at(5)), peerAuthentication('prod', 'plain', { mtls: 'DISABLE' }, at(4))],
    want: 'DISABLE',
  },
  {
    name: 'namespace scope: an older UNSET still wins the scope and inherits the mesh',
    policies: [meshPolicy('PERMISSIVE'), peerAuthentication('prod', 'a', { mtls: 'UNSET' }, at(1)), peerAuthentication('prod', 'b', { mtls: 'STRICT' }, at(2))],
    want: 'PERMISSIVE',
  },

  // the workload scope: PeerAuthentication selectors
  { name: 'a matching selector over the namespace', policies: [peerAuthentication('prod', 'default', { mtls: 'PERMISSIVE' }), peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'STRICT' })], want: 'STRICT' },
  { name: 'a selector on other labels does not apply', policies: [strictNs, peerAuthentication('prod', 'web', { selector: { app: 'web' }, mtls: 'DISABLE' })], want: 'STRICT' },
  {
    name: 'a selector needs every label',
    policies: [strictNs, peerAuthentication('prod', 'api-v2', { selector: { app: 'api', version: 'v2' }, mtls: 'DISABLE' })],
    want: 'STRICT',
  },
  {
    name: 'a selector matching a subset of the labels applies',
    policies: [strictNs, peerAuthentication('prod', 'api-v1', { selector: { version: 'v1' }, mtls: 'DISABLE' })],
    want: 'DISABLE',
  },
  {
    name: "a selector in another namespace does not apply",
    policies: [strictNs, peerAuthentication('staging', 'api', { selector: selectApi, mtls: 'DISABLE' })],
    want: 'STRICT',
  },
  {
    name: 'a selector in the root namespace is ignored (as Istio does)',
    policies: [strictNs, peerAuthentication('istio-system', 'api', { selector: selectApi, mtls: 'DISABLE' })],
    want: 'STRICT',
  },
  { name: 'workload UNSET inherits the namespace', policies: [peerAuthentication('prod', 'default', { mtls: 'DISABLE' }), peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'UNSET' })], want: 'DISABLE' },
  { name: 'workload UNSET and namespace UNSET inherit the mesh', policies: [meshPolicy('STRICT'), peerAuthentication('prod', 'default', {}), peerAuthentication('prod', 'api', { selector: selectApi })], want: 'STRICT' },

  // port-level
  { name: 'portLevelMtls for the port', policies: [peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'STRICT', ports: { 8080: 'DISABLE' } })], port: 8080, want: 'DISABLE' },
  { name: 'portLevelMtls for another port', policies: [peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'STRICT', ports: { 8080: 'DISABLE' } })], port: 9090, want: 'STRICT' },
  {
    name: 'a port UNSET inherits the workload level',
    policies: [peerAuthentication('prod', 'default', { mtls: 'DISABLE' }), peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'STRICT', ports: { 8080: 'UNSET' } })],
    want: 'STRICT',
  },
  {
    name: 'a port UNSET under a workload UNSET inherits the namespace',
    policies: [peerAuthentication('prod', 'default', { mtls: 'DISABLE' }), peerAuthentication('prod', 'api', { selector: selectApi, ports: { 8080: 'UNSET' } })],
    want: 'DISABLE',
  },
  {
    name: 'a port STRICT under a workload UNSET',
    policies: [peerAuthentication('prod', 'default', { mtls: 'PERMISSIVE' }), peerAuthentication('prod', 'api', { selector: selectApi, ports: { 8080: 'STRICT' } })],
    port: 8080,
    want: 'STRICT',
  },
  {
    name: '... and its other port inherits the namespace',
    policies: [peerAuthentication('prod', 'default', { mtls: 'PERMISSIVE' }), peerAuthentication('prod', 'api', { selector: selectApi, ports: { 8080: 'STRICT' } })],
    port: 9090,
    want: 'PERMISSIVE',
  },

  // oldest wins within the workload scope
  {
    name: 'two selectors: the older wins',
    policies: [peerAuthentication('prod', 'b', { selector: selectApi, mtls: 'STRICT' }, at(2)), peerAuthentication('prod', 'a', { selector: { version: 'v1' }, mtls: 'DISABLE' }, at(1))],
    want: 'DISABLE',
  },
  {
    name: 'two selectors: the older wins, whichever its name',
    policies: [peerAuthentication('prod', 'b', { selector: selectApi, mtls: 'STRICT' }, at(1)), peerAuthentication('prod', 'a', { selector: { version: 'v1' }, mtls: 'DISABLE' }, at(2))],
    want: 'STRICT',
  },
  {
    name: 'same creationTimestamp: the first name wins',
    policies: [peerAuthentication('prod', 'zz', { selector: selectApi, mtls: 'STRICT' }, at(1)), peerAuthentication('prod', 'aa', { selector: selectApi, mtls: 'DISABLE' }, at(1))],
    want: 'DISABLE',
  },
  {
    name: 'no creationTimestamp counts as oldest',
    policies: [peerAuthentication('prod', 'a', { selector: selectApi, mtls: 'STRICT' }, at(1)), peerAuthentication('prod', 'z', { selector: selectApi, mtls: 'DISABLE' })],
    want: 'DISABLE',
  },
  {
    name: "the older selector's port level applies, not the newer one's",
    policies: [
      peerAuthentication('prod', 'old', { selector: selectApi, mtls: 'STRICT' }, at(1)),
      peerAuthentication('prod', 'new', { selector: selectApi, mtls: 'STRICT', ports: { 8080: 'DISABLE' } }, at(2)),
    ],
    want: 'STRICT',
  },
  {
    name: 'timestamps with offsets compare as instants',
    policies: [
      peerAuthentication('prod', 'a', { selector: selectApi, mtls: 'STRICT' }, '2024-05-01T12:30:00+02:00'), // 10:30Z
      peerAuthentication('prod', 'b', { selector: selectApi, mtls: 'DISABLE' }, '2024-05-01T11:00:00Z'),
    ],
    want: 'STRICT',
  },

  // the workload scope: v1alpha1 Policy targets
  { name: 'a Policy targeting the Marathon id', policies: [meshPolicy(undefined), targetPolicy('prod', 'api', [{ name: '/prod/payments/api' }], 'STRICT')], want: 'STRICT' },
  { name: 'a Policy targeting the Mesos-DNS name', policies: [meshPolicy(undefined), targetPolicy('prod', 'api', [{ name: 'api-payments-prod.marathon.mesos' }], 'STRICT')], want: 'STRICT' },
  { name: 'a Policy targeting another service does not apply', policies: [meshPolicy(undefined), targetPolicy('prod', 'web', [{ name: '/prod/payments/web' }], 'STRICT')], want: 'DISABLE' },
  {
    name: 'a Policy in another namespace does not apply, even naming the service',
    policies: [meshPolicy(undefined), targetPolicy('staging', 'api', [{ name: '/prod/payments/api' }], 'STRICT')],
    want: 'DISABLE',
  },
  { name: 'a target port number that matches', policies: [strictNs, targetPolicy('prod', 'api', [{ name: '/prod/payments/api', ports: [{ number: 8080 }] }], 'PERMISSIVE')], port: 8080, want: 'PERMISSIVE' },
  { name: 'a target port number that does not match', policies: [strictNs, targetPolicy('prod', 'api', [{ name: '/prod/payments/api', ports: [{ number: 8080 }] }], 'PERMISSIVE')], port: 9090, want: 'STRICT' },
  { name: 'a target port name that matches', policies: [strictNs, targetPolicy('prod', 'api', [{ name: '/prod/payments/api', ports: [{ name: 'grpc' }] }], 'PERMISSIVE')], port: 9090, want: 'PERMISSIVE' },
  { name: 'a target port name that does not match', policies: [strictNs, targetPolicy('prod', 'api', [{ name: '/prod/payments/api', ports: [{ name: 'grpc' }] }], 'PERMISSIVE')], port: 8080, want: 'STRICT' },
  {
    name: 'a target port name on a workload without named ports',
    policies: [strictNs, targetPolicy('prod', 'api', [{ name: '/prod/payments/api', ports: [{ name: 'grpc' }] }], 'PERMISSIVE')],
    workload: { ...api, ports: undefined },
    port: 9090,
    want: 'STRICT',
  },
  { name: 'a targeting Policy without peers is DISABLE', policies: [strictNs, targetPolicy('prod', 'api', [{ name: '/prod/payments/api' }], undefined)], want: 'DISABLE' },
  {
    name: 'workload scope mixes kinds: an older Policy target beats a newer selector',
    policies: [targetPolicy('prod', 'api', [{ name: '/prod/payments/api' }], 'PERMISSIVE', at(1)), peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'STRICT' }, at(2))],
    want: 'PERMISSIVE',
  },
  {
    name: 'workload scope mixes kinds: an older selector beats a newer Policy target',
    policies: [targetPolicy('prod', 'api', [{ name: '/prod/payments/api' }], 'PERMISSIVE', at(2)), peerAuthentication('prod', 'api', { selector: selectApi, mtls: 'STRICT' }, at(1))],
    want: 'STRICT',
  },

  // workloads in the root namespace
  {
    name: 'in the root namespace, Policy default is its namespace scope, over the mesh',
    policies: [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }), namespacePolicy('istio-system', 'PERMISSIVE')],
    workload: { ...api, namespace: 'istio-system' },
    want: 'PERMISSIVE',
  },
  {
    name: 'in the root namespace, a selector is ignored',
    policies: [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' }), peerAuthentication('istio-system', 'api', { selector: selectApi, mtls: 'DISABLE' })],
    workload: { ...api, namespace: 'istio-system' },
    want: 'STRICT',
  },

  { name: 'DestinationRules play no part', policies: [strictNs, destinationRule('prod', 'api', '/prod/payments/api', { mode: 'DISABLE' })], want: 'STRICT' },
];

describe('resolvePeerMtls: workload over namespace over mesh, oldest wins, UNSET inherits', () => {
  for (const row of rows) {
    it(row.name, () => {
      const options = row.rootNamespace === undefined ? {} : { rootNamespace: row.rootNamespace };
      assert.equal(resolvePeerMtls(row.policies, row.workload ?? api, row.port ?? 8080, options), row.want);
    });
  }

  it('the order of the policy list does not matter', () => {
    for (const row of rows) {
      const options = row.rootNamespace === undefined ? {} : { rootNamespace: row.rootNamespace };
      const reversed = [...row.policies].reverse();
      assert.equal(resolvePeerMtls(reversed, row.workload ?? api, row.port ?? 8080, options), row.want, row.name);
    }
  });
});
