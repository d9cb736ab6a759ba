import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatPolicyJson,
  formatPolicyYaml,
  fromCanonical,
  parsePolicyText,
  policyKey,
  PolicyError,
  toCanonical,
  withCreationTimestamp,
  type PolicyDocument,
} from '../../../src/mesh/policy';
import { at, destinationRule, meshPolicy, namespacePolicy, peerAuthentication, targetPolicy } from './fixtures';

/** One of each kind and shape, with labels, annotations, timestamps and every TLS field. */
const documents: PolicyDocument[] = [
  meshPolicy('STRICT', at(0)),
  namespacePolicy('prod', undefined),
  targetPolicy('prod', 'api-strict', [{ name: '/prod/payments/api', ports: [{ number: 8080 }, { name: 'grpc' }] }, { name: 'web-prod.marathon.mesos' }], 'PERMISSIVE', at(1)),
  {
    ...peerAuthentication('prod', 'api', { selector: { app: 'api', 'citadel.io/tier': 'backend' }, mtls: 'STRICT', ports: { 8080: 'DISABLE', 9090: 'UNSET' } }, at(2)),
    metadata: {
      name: 'api',
      namespace: 'prod',
      creationTimestamp: at(2),
      labels: { owner: 'payments' },
      annotations: { 'citadel.io/note': 'plaintext health checks on 8080: "yes"\nsecond line' },
    },
  },
  peerAuthentication('istio-system', 'default', {}),
  destinationRule('prod', 'api', 'api-payments-prod.marathon.mesos', { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/prod/sa/api'], sni: 'api' }, { 8080: { mode: 'DISABLE' } }),
  destinationRule('prod', 'db', 'db.example.com', {
    mode: 'MUTUAL',
    clientCertificate: '/etc/certs/client.pem',
    privateKey: '/etc/certs/key.pem',
    caCertificates: '/etc/certs/ca.pem',
    subjectAltNames: ['db.example.com', 'db'],
    sni: 'db.example.com',
  }),
  destinationRule('ops', 'all', '*', undefined),
];

describe('canonical form: Istio shape, only what citadel acts on, defaults left out', () => {
  it('each document has its exact canonical shape', () => {
    assert.deepEqual(toCanonical(documents[0]), {
      apiVersion: 'authentication.istio.io/v1alpha1',
      kind: 'MeshPolicy',
      metadata: { name: 'default', creationTimestamp: '2024-05-01T12:00:00Z' },
      spec: { peers: [{ mtls: { mode: 'STRICT' } }] },
    });
    assert.deepEqual(toCanonical(documents[1]).spec, {}, 'no peers: no peer authentication');
    assert.deepEqual(toCanonical(documents[2]).spec, {
      targets: [{ name: '/prod/payments/api', ports: [{ number: 8080 }, { name: 'grpc' }] }, { name: 'web-prod.marathon.mesos' }],
      peers: [{ mtls: { mode: 'PERMISSIVE' } }],
    });
    assert.deepEqual(toCanonical(documents[3]).spec, {
      selector: { matchLabels: { app: 'api', 'citadel.io/tier': 'backend' } },
      mtls: { mode: 'STRICT' },
      portLevelMtls: { '8080': { mode: 'DISABLE' }, '9090': { mode: 'UNSET' } },
    });
    assert.deepEqual(toCanonical(documents[4]).spec, {}, 'UNSET is the default');
    assert.deepEqual(toCanonical(documents[5]).spec, {
      host: 'api-payments-prod.marathon.mesos',
      trafficPolicy: {
        tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/prod/sa/api'], sni: 'api' },
        portLevelSettings: [{ port: { number: 8080 }, tls: { mode: 'DISABLE' } }],
      },
    });
    assert.deepEqual(toCanonical(documents[7]).spec, { host: '*' });
  });

  it('round trip: canonical -> JSON text (the store) -> typed is the identity', () => {
    for (const doc of documents) {
      const stored: unknown = JSON.parse(JSON.stringify(toCanonical(doc)));
      assert.deepEqual(fromCanonical(stored, `store:${policyKey(doc)}`), doc);
    }
  });

  it('round trip: YAML output -> parser is the identity, with no warnings', () => {
    const yaml = formatPolicyYaml(documents);
    const parsed = parsePolicyText(yaml, 'get.yaml');
    assert.deepEqual(parsed.documents, documents);
    assert.deepEqual(parsed.warnings, []);
  });

  it('round trip: JSON output (one object, or a List) -> parser is the identity', () => {
    assert.deepEqual(parsePolicyText(formatPolicyJson(documents), 'get.json').documents, documents);
    const one = formatPolicyJson([documents[3]]);
    assert.equal((JSON.parse(one) as { kind: string }).kind, 'PeerAuthentication');
    assert.deepEqual(parsePolicyText(one, 'get.json').documents, [documents[3]]);
    assert.deepEqual(JSON.parse(formatPolicyJson([])), { apiVersion: 'v1', kind: 'List', items: [] });
  });

  it('YAML output reads as a person would write it', () => {
    assert.equal(
      formatPolicyYaml([documents[3], documents[7]]),
      `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: api
  namespace: prod
  creationTimestamp: 2024-05-01T12:02:00Z
  labels:
    owner: payments
  annotations:
    citadel.io/note: |-
      plaintext health checks on 8080: "yes"
      second line
spec:
  selector:
    matchLabels:
      app: api
      citadel.io/tier: backend
  mtls:
    mode: STRICT
  portLevelMtls:
    "8080":
      mode: DISABLE
    "9090":
      mode: UNSET
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: all
  namespace: ops
spec:
  host: "*"
`,
    );
    assert.equal(formatPolicyYaml([]), '');
  });

  it('what citadel ignores is not kept; equivalent spellings become one form', () => {
    const { documents: parsed } = parsePolicyText(
      `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: api, namespace: prod, uid: x}
spec:
  host: /prod/payments/api
  exportTo: ["*"]
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    tls: {mode: ISTIO_MUTUAL, clientCertificate: "", caCertificates: /ignored.pem}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: prod}
spec:
  peers:
  - mtls: {allowTls: true}
  origins: [{jwt: {issuer: x}}]
`,
      'in.yaml',
    );
    assert.deepEqual(
      parsed.map(toCanonical),
      [
        {
          apiVersion: 'networking.istio.io/v1beta1',
          kind: 'DestinationRule',
          metadata: { name: 'api', namespace: 'prod' },
          spec: { host: '/prod/payments/api', trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } },
        },
        {
          apiVersion: 'authentication.istio.io/v1alpha1',
          kind: 'Policy',
          metadata: { name: 'default', namespace: 'prod' },
          spec: { peers: [{ mtls: { mode: 'PERMISSIVE' } }] },
        },
      ],
    );
  });

  it('a corrupt stored object is a PolicyError naming where it came from', () => {
    const stored = { ...toCanonical(documents[3]), spec: { mtls: { mode: 'STRICTISH' } } };
    assert.throws(
      () => fromCanonical(stored, 'store:PeerAuthentication/prod/api'),
      (err: unknown) =>
        err instanceof PolicyError &&
        err.message === 'store:PeerAuthentication/prod/api: document 1 (PeerAuthentication prod/api): spec.mtls.mode: "STRICTISH" is not one of UNSET, DISABLE, PERMISSIVE, STRICT',
    );
    assert.throws(() => fromCanonical('not an object', 'store:x'), PolicyError);
    assert.throws(() => fromCanonical(new Date(), 'store:x'), PolicyError);
  });

  it('policyKey and withCreationTimestamp', () => {
    assert.deepEqual(documents.map(policyKey), [
      'MeshPolicy/default',
      'Policy/prod/default',
      'Policy/prod/api-strict',
      'PeerAuthentication/prod/api',
      'PeerAuthentication/istio-system/default',
      'DestinationRule/prod/api',
      'DestinationRule/prod/db',
      'DestinationRule/ops/all',
    ]);
    const stamped = withCreationTimestamp(documents[1], new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)));
    assert.equal(stamped.metadata.creationTimestamp, '2024-01-02T03:04:05.678Z');
    assert.equal(documents[1].metadata.creationTimestamp, undefined, 'the original is unchanged');
    assert.deepEqual(fromCanonical(toCanonical(stamped), 'store'), stamped);
  });
});
