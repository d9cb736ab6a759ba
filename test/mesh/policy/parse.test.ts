import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserError } from '../../../src/common/errors';
import { parsePolicySources, parsePolicyText, PolicyError, type PolicyDocument } from '../../../src/mesh/policy';

const FILE = 'policies/strict.yaml';

function parse(text: string): { documents: readonly PolicyDocument[]; warnings: readonly string[] } {
  return parsePolicyText(text, FILE);
}

/** The problems of a text that must not parse. */
function problems(text: string, file = FILE): readonly string[] {
  try {
    parsePolicyText(text, file);
  } catch (err) {
    assert.ok(err instanceof PolicyError, `not a PolicyError: ${String(err)}`);
    return err.problems;
  }
  assert.fail('parsed without error');
}

const PA_HEAD = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: api
  namespace: prod
`;
const DR_HEAD = `apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: api
  namespace: prod
`;
const POLICY_HEAD = (name: string): string => `apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: ${name}
  namespace: prod
`;

describe('parsing: what each kind becomes', () => {
  it('MeshPolicy default with `mtls:` (null) is STRICT, cluster-scoped', () => {
    const { documents, warnings } = parse(`apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: default
spec:
  peers:
  - mtls:
`);
    assert.deepEqual(documents, [
      { kind: 'MeshPolicy', apiVersion: 'authentication.istio.io/v1alpha1', metadata: { name: 'default' }, spec: { targets: [], peerMtls: 'STRICT' } },
    ]);
    assert.deepEqual(warnings, []);
  });

  it('Policy: `mtls: {}` is STRICT, mode PERMISSIVE and allowTls are PERMISSIVE, no peers is no peer authentication', () => {
    const modes = ['[{mtls: {}}]', '[{mtls: {mode: PERMISSIVE}}]', '[{mtls: {allowTls: true}}]', '[]'].map((peers) => {
      const [doc] = parse(`${POLICY_HEAD('default')}spec:\n  peers: ${peers}\n`).documents;
      assert.equal(doc.kind, 'Policy');
      return doc.spec.peerMtls;
    });
    assert.deepEqual(modes, ['STRICT', 'PERMISSIVE', 'PERMISSIVE', undefined]);
    const [noSpec] = parse(`${POLICY_HEAD('default')}`).documents;
    assert.deepEqual(noSpec.spec, { targets: [] });
  });

  it('Policy with targets by Marathon id and Mesos-DNS name, ports by number and name; JWT accepted and reported', () => {
    const { documents, warnings } = parse(`${POLICY_HEAD('payments-api')}spec:
  targets:
  - name: /prod/payments/api
    ports:
    - number: 8080
    - name: grpc
  - name: api-payments-prod.marathon.mesos
  peers:
  - jwt: {issuer: https://example.com}
  - mtls: {mode: STRICT}
  - mtls: {mode: PERMISSIVE}
  origins:
  - jwt: {issuer: https://example.com}
  principalBinding: USE_ORIGIN
`);
    assert.deepEqual(documents[0].spec, {
      targets: [
        { name: '/prod/payments/api', ports: [{ number: 8080 }, { name: 'grpc' }] },
        { name: 'api-payments-prod.marathon.mesos', ports: [] },
      ],
      peerMtls: 'STRICT',
    });
    const head = `${FILE}: document 1 (Policy prod/payments-api)`;
    assert.deepEqual(warnings, [
      `${head}: spec.origins: accepted but ignored: origin (JWT) authentication: citadel authenticates peers by mTLS only`,
      `${head}: spec.principalBinding: accepted but ignored: the principal is always the peer identity`,
      `${head}: spec.peers[0].jwt: accepted but ignored: JWT peers: citadel authenticates peers by mTLS only`,
      `${head}: spec.peers[2].mtls: a second mtls peer; Istio uses the first`,
    ]);
  });

  it('PeerAuthentication: selector, mode, portLevelMtls sorted by port; empty matchLabels is no selector', () => {
    const [pa] = parse(`${PA_HEAD}spec:
  selector:
    matchLabels: {app: api, tier: backend}
  mtls: {mode: STRICT}
  portLevelMtls:
    9090: {mode: PERMISSIVE}
    8080:
      mode: DISABLE
    "7070": {}
`).documents;
    assert.deepEqual(pa.spec, {
      selector: { app: 'api', tier: 'backend' },
      mtls: 'STRICT',
      portLevelMtls: [
        { port: 7070, mode: 'UNSET' },
        { port: 8080, mode: 'DISABLE' },
        { port: 9090, mode: 'PERMISSIVE' },
      ],
    });
    for (const spec of ['spec: {selector: {matchLabels: {}}}', 'spec: {selector: {}, mtls: {}}', 'spec: {mtls: null}', '']) {
      const [doc] = parse(`${PA_HEAD}${spec}\n`).documents;
      assert.deepEqual(doc.spec, { mtls: 'UNSET', portLevelMtls: [] }, spec);
    }
  });

  it('PeerAuthentication under security.istio.io/v1; namespace defaults to `default`', () => {
    const [pa] = parse(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: PERMISSIVE}}
`).documents;
    assert.deepEqual(pa, {
      kind: 'PeerAuthentication',
      apiVersion: 'security.istio.io/v1',
      metadata: { name: 'default', namespace: 'default' },
      spec: { mtls: 'PERMISSIVE', portLevelMtls: [] },
    });
  });

  it('DestinationRule (v1alpha3, v1beta1, v1): tls and port-level tls kept, the rest reported as ignored', () => {
    for (const version of ['v1alpha3', 'v1beta1', 'v1']) {
      const { documents, warnings } = parse(`apiVersion: networking.istio.io/${version}
kind: DestinationRule
metadata: {name: db, namespace: prod, labels: {team: payments}, annotations: {note: "any text: here"}}
spec:
  host: db.example.com
  exportTo: ["."]
  workloadSelector: {matchLabels: {app: api}}
  subsets: [{name: v1, labels: {version: v1}}]
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10}}
    outlierDetection: {consecutive5xxErrors: 3}
    tls:
      mode: SIMPLE
      caCertificates: /etc/ssl/ca.pem
      sni: db.example.com
      subjectAltNames: [db.example.com]
      credentialName: db-cred
    portLevelSettings:
    - port: {number: 5432}
      loadBalancer: {simple: RANDOM}
      tls:
        mode: MUTUAL
        clientCertificate: /etc/certs/client.pem
        privateKey: /etc/certs/client-key.pem
    - port: {number: 9000}
      loadBalancer: {simple: RANDOM}
`);
      assert.deepEqual(documents[0], {
        kind: 'DestinationRule',
        apiVersion: `networking.istio.io/${version}`,
        metadata: { name: 'db', namespace: 'prod', labels: { team: 'payments' }, annotations: { note: 'any text: here' } },
        spec: {
          host: 'db.example.com',
          tls: { mode: 'SIMPLE', caCertificates: '/etc/ssl/ca.pem', subjectAltNames: ['db.example.com'], sni: 'db.example.com' },
          portLevelTls: [{ port: 5432, tls: { mode: 'MUTUAL', clientCertificate: '/etc/certs/client.pem', privateKey: '/etc/certs/client-key.pem' } }],
        },
      });
      const head = `${FILE}: document 1 (DestinationRule prod/db)`;
      assert.deepEqual(warnings, [
        `${head}: spec.exportTo: accepted but ignored: every rule is visible to every namespace (Istio default)`,
        `${head}: spec.workloadSelector: accepted but ignored: the rule applies to every client sidecar`,
        `${head}: spec.subsets: accepted but ignored: citadel sends traffic to the whole service`,
        `${head}: spec.trafficPolicy.loadBalancer: accepted but ignored: citadel configures TLS only`,
        `${head}: spec.trafficPolicy.connectionPool: accepted but ignored: citadel configures TLS only`,
        `${head}: spec.trafficPolicy.outlierDetection: accepted but ignored: citadel configures TLS only`,
        `${head}: spec.trafficPolicy.tls.credentialName: accepted but ignored: Marathon has no Kubernetes secrets; give clientCertificate and privateKey`,
        `${head}: spec.trafficPolicy.portLevelSettings[0].loadBalancer: accepted but ignored: citadel configures TLS only`,
        `${head}: spec.trafficPolicy.portLevelSettings[1].loadBalancer: accepted but ignored: citadel configures TLS only`,
      ]);
    }
  });

  it('DestinationRule tls: mode defaults to DISABLE; fields a mode does not use are reported', () => {
    const { documents, warnings } = parse(`${DR_HEAD}spec:
  host: "*.marathon.mesos"
  trafficPolicy:
    tls:
      sni: x.example.com
    portLevelSettings:
    - port: {number: 8080}
      tls: {mode: ISTIO_MUTUAL, privateKey: /k.pem, sni: api.prod, subjectAltNames: ["spiffe://cluster.local/ns/prod/sa/api"]}
`);
    assert.deepEqual(documents[0].spec, {
      host: '*.marathon.mesos',
      tls: { mode: 'DISABLE' },
      portLevelTls: [{ port: 8080, tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/prod/sa/api'], sni: 'api.prod' } }],
    });
    const head = `${FILE}: document 1 (DestinationRule prod/api)`;
    assert.deepEqual(warnings, [
      `${head}: spec.trafficPolicy.tls.sni: accepted but ignored: mode DISABLE sends plaintext`,
      `${head}: spec.trafficPolicy.portLevelSettings[0].tls.privateKey: accepted but ignored: ISTIO_MUTUAL presents the workload's citadel certificate and checks the mesh root`,
    ]);
  });

  it('metadata: creationTimestamp kept, Kubernetes-managed fields and status reported, labels sorted', () => {
    const { documents, warnings } = parse(`${PA_HEAD.replace('  namespace: prod\n', `  namespace: prod
  creationTimestamp: "2024-05-01T12:00:00Z"
  uid: 3f1c
  resourceVersion: "42"
  labels: {b: "2", a: "1"}
`)}spec: {}
status: {}
`);
    assert.deepEqual(documents[0].metadata, { name: 'api', namespace: 'prod', creationTimestamp: '2024-05-01T12:00:00Z', labels: { a: '1', b: '2' } });
    assert.deepEqual(Object.keys(documents[0].metadata.labels ?? {}), ['a', 'b']);
    const head = `${FILE}: document 1 (PeerAuthentication prod/api)`;
    assert.deepEqual(warnings, [
      `${head}: status: accepted but ignored: status is written by the control plane`,
      `${head}: metadata.uid: accepted but ignored: set by Kubernetes; citadel keeps its own`,
      `${head}: metadata.resourceVersion: accepted but ignored: set by Kubernetes; citadel keeps its own`,
    ]);
  });

  it('several documents, empty ones skipped; a kubectl List; JSON', () => {
    const text = `---\n${PA_HEAD}---\n# only a comment\n---\n${DR_HEAD}spec: {host: /prod/payments/api}\n---\n`;
    assert.deepEqual(
      parse(text).documents.map((d) => d.kind),
      ['PeerAuthentication', 'DestinationRule'],
    );
    const list = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'a', namespace: 'prod' }, spec: { mtls: { mode: 'STRICT' } } },
        { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'b', namespace: 'prod' } },
      ],
    });
    assert.deepEqual(
      parsePolicyText(list, 'all.json').documents.map((d) => `${d.metadata.name} ${d.kind === 'PeerAuthentication' ? d.spec.mtls : ''}`),
      ['a STRICT', 'b UNSET'],
    );
    assert.deepEqual(parse('').documents, []);
  });
});

describe('parsing: every error is one line naming file, document, kind and name, and the field', () => {
  const head = `${FILE}: document 1 (PeerAuthentication prod/api)`;
  const cases: { name: string; text: string; want: string[] }[] = [
    {
      name: 'an invalid mode (the example of the spec)',
      text: `${PA_HEAD}spec: {mtls: {mode: STRICTT}}\n`,
      want: [`${head}: spec.mtls.mode: "STRICTT" is not one of UNSET, DISABLE, PERMISSIVE, STRICT`],
    },
    {
      name: 'an unknown field, with a suggestion',
      text: `${PA_HEAD}spec: {portlevelMtls: {8080: {mode: STRICT}}}\n`,
      want: [`${head}: spec.portlevelMtls: unknown field; PeerAuthentication spec has selector, mtls, portLevelMtls (did you mean portLevelMtls?)`],
    },
    {
      name: 'an unknown field at the top, in metadata, deep in a spec',
      text: `${PA_HEAD}  nmespace: x\nspec: {selector: {matchLabels: {app: api}, labels: {}}}\nextra: 1\n`,
      want: [
        `${head}: extra: unknown field; a document has apiVersion, kind, metadata, spec, status`,
        `${head}: metadata.nmespace: unknown field; metadata has name, namespace, creationTimestamp, labels, annotations, uid, resourceVersion, generation, selfLink, managedFields, generateName, ownerReferences, finalizers, deletionTimestamp, deletionGracePeriodSeconds (did you mean namespace?)`,
        `${head}: spec.selector.labels: unknown field; selector has matchLabels`,
      ],
    },
    {
      name: 'a field of another kind (PeerAuthentication has no peers)',
      text: `${PA_HEAD}spec: {peers: [{mtls: {}}]}\n`,
      want: [`${head}: spec.peers: unknown field; PeerAuthentication spec has selector, mtls, portLevelMtls`],
    },
    {
      name: 'wrong types',
      text: `${PA_HEAD}spec: {mtls: STRICT, selector: {matchLabels: [app]}, portLevelMtls: {8080: {mode: 3}}}\n`,
      want: [
        `${head}: spec.selector.matchLabels: expected a mapping, got a list`,
        `${head}: spec.mtls: expected a mapping, got a string ("STRICT")`,
        `${head}: spec.portLevelMtls.8080.mode: expected one of UNSET, DISABLE, PERMISSIVE, STRICT, got a number (3)`,
      ],
    },
    {
      name: 'a label value of the wrong type',
      text: `${PA_HEAD}spec: {selector: {matchLabels: {app: 1, on: true}}}\n`,
      want: [`${head}: spec.selector.matchLabels.app: expected a string, got a number (1)`, `${head}: spec.selector.matchLabels.on: expected a string, got a boolean (true)`],
    },
    {
      name: 'portLevelMtls without a selector',
      text: `${PA_HEAD}spec: {mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}\n`,
      want: [`${head}: spec.portLevelMtls: needs spec.selector.matchLabels (Istio applies port-level mTLS to selected workloads only)`],
    },
    {
      name: 'portLevelMtls keys that are not ports',
      text: `${PA_HEAD}spec: {selector: {matchLabels: {app: api}}, portLevelMtls: {0: {}, http: {}, 65536: {}}}\n`,
      want: [
        `${head}: spec.portLevelMtls.0: key "0" must be a port number from 1 to 65535`,
        `${head}: spec.portLevelMtls.http: key "http" must be a port number from 1 to 65535`,
        `${head}: spec.portLevelMtls.65536: key "65536" must be a port number from 1 to 65535`,
      ],
    },
    {
      name: 'an unknown kind',
      text: `apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: gw}\n`,
      want: [`${FILE}: document 1: kind: "Gateway" is not one of MeshPolicy, Policy, PeerAuthentication, DestinationRule`],
    },
    {
      name: 'an apiVersion the kind is not served under',
      text: PA_HEAD.replace('security.istio.io/v1beta1', 'authentication.istio.io/v1alpha1'),
      want: [`${head}: apiVersion: "authentication.istio.io/v1alpha1" is not one of security.istio.io/v1beta1, security.istio.io/v1 for PeerAuthentication`],
    },
    {
      name: 'missing apiVersion, kind, metadata',
      text: `spec: {}\n`,
      want: [`${FILE}: document 1: kind: is required`, `${FILE}: document 1: apiVersion: is required`, `${FILE}: document 1: metadata: is required`],
    },
    {
      name: 'not a mapping',
      text: `- kind: PeerAuthentication\n`,
      want: [`${FILE}: document 1: expected a mapping with apiVersion, kind, metadata and spec, got a list`],
    },
    {
      name: 'a name that is not DNS-1123, a namespace that is not a DNS label',
      text: PA_HEAD.replace('name: api', 'name: Payments_API').replace('namespace: prod', 'namespace: prod.eu'),
      want: [
        `${FILE}: document 1 (PeerAuthentication): metadata.name: "Payments_API" must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)`,
        `${FILE}: document 1 (PeerAuthentication): metadata.namespace: "prod.eu" must be a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)`,
      ],
    },
    {
      name: 'a missing name',
      text: `apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {namespace: prod}\n`,
      want: [`${FILE}: document 1 (PeerAuthentication): metadata.name: is required`],
    },
    {
      name: 'a creationTimestamp that is not RFC 3339',
      text: `${PA_HEAD}  creationTimestamp: "2024-02-30T10:00:00Z"\n`,
      want: [`${head}: metadata.creationTimestamp: "2024-02-30T10:00:00Z" is not an RFC 3339 timestamp (2024-05-01T12:00:00Z)`],
    },
    {
      name: 'a label key that Kubernetes refuses',
      text: `${PA_HEAD}  labels: {"bad key": x}\n`,
      want: [
        `${head}: metadata.labels["bad key"]: key "bad key" must be [prefix/]name, name at most 63 letters, digits, '-', '_' or '.' (starting and ending alphanumeric), prefix a DNS subdomain`,
      ],
    },
    {
      name: 'MeshPolicy not named default, with a namespace and targets',
      text: `apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: strict, namespace: istio-system}\nspec: {targets: [{name: /prod/api}]}\n`,
      want: [
        `${FILE}: document 1 (MeshPolicy strict): metadata.namespace: MeshPolicy is cluster-scoped and takes no namespace; remove it`,
        `${FILE}: document 1 (MeshPolicy strict): metadata.name: "strict": only the MeshPolicy named "default" is honoured; rename it`,
        `${FILE}: document 1 (MeshPolicy strict): spec.targets: a MeshPolicy is mesh-wide and takes no targets`,
      ],
    },
    {
      name: 'a Policy without targets not named default',
      text: `${POLICY_HEAD('strict')}spec: {peers: [{mtls: {}}]}\n`,
      want: [
        `${FILE}: document 1 (Policy prod/strict): metadata.name: "strict": a Policy without targets covers the whole namespace and must be named "default"; add spec.targets or rename it`,
      ],
    },
    {
      name: 'the Policy default with targets',
      text: `${POLICY_HEAD('default')}spec: {targets: [{name: /prod/payments/api}]}\n`,
      want: [`${FILE}: document 1 (Policy prod/default): spec.targets: the Policy named "default" covers the whole namespace and takes no targets; give this one another name`],
    },
    {
      name: 'Policy targets and peers that Istio refuses',
      text: `${POLICY_HEAD('api')}spec:
  targets:
  - ports: [{number: 8080, name: http}, {}]
  - name: "*.marathon.mesos"
    ports: [{number: 70000}, {name: "has space"}]
  peers: [{}, {mtls: {}, jwt: {}}, {mtls: {mode: DISABLE}}]
`,
      want: [
        `${FILE}: document 1 (Policy prod/api): spec.targets[0].name: is required`,
        `${FILE}: document 1 (Policy prod/api): spec.targets[0].ports[0]: give exactly one of number or name`,
        `${FILE}: document 1 (Policy prod/api): spec.targets[0].ports[1]: give exactly one of number or name`,
        `${FILE}: document 1 (Policy prod/api): spec.targets[1].name: "*.marathon.mesos" is neither a Marathon id (/prod/payments/api) nor a DNS name (api-payments-prod.marathon.mesos)`,
        `${FILE}: document 1 (Policy prod/api): spec.targets[1].ports[0].number: 70000 is out of range (1 to 65535)`,
        `${FILE}: document 1 (Policy prod/api): spec.targets[1].ports[1].name: "has space" is not a port name (letters, digits, '-', '_' and '.', at most 63 characters)`,
        `${FILE}: document 1 (Policy prod/api): spec.peers[0]: give mtls (or jwt)`,
        `${FILE}: document 1 (Policy prod/api): spec.peers[1]: mtls and jwt exclude each other; give one per peer`,
        `${FILE}: document 1 (Policy prod/api): spec.peers[2].mtls.mode: "DISABLE" is not one of STRICT, PERMISSIVE`,
      ],
    },
    {
      name: 'a DestinationRule without host, and with a host that is no name',
      text: `${DR_HEAD}---\n${DR_HEAD.replace('name: api', 'name: web')}spec: {host: "prod/api"}\n`,
      want: [
        `${FILE}: document 1 (DestinationRule prod/api): spec.host: is required`,
        `${FILE}: document 2 (DestinationRule prod/web): spec.host: "prod/api" is neither a Marathon id (/prod/payments/api), a DNS name (api-payments-prod.marathon.mesos) nor a wildcard (*.marathon.mesos, *)`,
      ],
    },
    {
      name: 'DestinationRule: MUTUAL without files, an invalid mode, port settings without or with a repeated port',
      text: `${DR_HEAD}spec:
  host: db.example.com
  trafficPolicy:
    tls: {mode: MUTUAL}
    portLevelSettings:
    - tls: {mode: ISTIO_MTLS}
    - port: {number: 5432}
    - port: {number: 5432}
`,
      want: [
        `${FILE}: document 1 (DestinationRule prod/api): spec.trafficPolicy.tls.clientCertificate: is required with mode MUTUAL (a path in the client sidecar)`,
        `${FILE}: document 1 (DestinationRule prod/api): spec.trafficPolicy.tls.privateKey: is required with mode MUTUAL (a path in the client sidecar)`,
        `${FILE}: document 1 (DestinationRule prod/api): spec.trafficPolicy.portLevelSettings[0].port: is required`,
        `${FILE}: document 1 (DestinationRule prod/api): spec.trafficPolicy.portLevelSettings[0].tls.mode: "ISTIO_MTLS" is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL`,
        `${FILE}: document 1 (DestinationRule prod/api): spec.trafficPolicy.portLevelSettings[2].port: port 5432 has settings twice`,
      ],
    },
    {
      name: 'an ignored field of the wrong type is still an error',
      text: `${DR_HEAD}spec: {host: /prod/api, exportTo: "*", trafficPolicy: {loadBalancer: ROUND_ROBIN}}\n`,
      want: [
        `${FILE}: document 1 (DestinationRule prod/api): spec.exportTo: expected a list, got a string ("*")`,
        `${FILE}: document 1 (DestinationRule prod/api): spec.trafficPolicy.loadBalancer: expected a mapping, got a string ("ROUND_ROBIN")`,
      ],
    },
    {
      name: 'two documents with the same kind/namespace/name',
      text: `${PA_HEAD}---\n${PA_HEAD}spec: {mtls: {mode: STRICT}}\n`,
      want: [`${FILE}: document 2 (PeerAuthentication prod/api): metadata.name: the same PeerAuthentication as ${FILE} document 1; each kind/namespace/name may appear once`],
    },
    {
      name: 'a YAML syntax error, with its line',
      text: `${PA_HEAD}spec:\n  mtls: {mode: STRICT\n`,
      want: [`${FILE}: document 1: line 8, column 1: YAML: Flow map in block collection must be sufficiently indented and end with a }`],
    },
    {
      name: 'a repeated YAML key',
      text: `${PA_HEAD}spec:\n  mtls: {mode: STRICT}\n  mtls: {mode: DISABLE}\n`,
      want: [`${FILE}: document 1: line 8, column 3: YAML: Map keys must be unique`],
    },
    {
      name: 'YAML values that are not JSON',
      text: `${PA_HEAD}spec: {selector: {matchLabels: {app: !!binary aGVsbG8=, x: .inf}}}\n`,
      want: [
        `${head}: spec.selector.matchLabels.app: unsupported value (an object of type Buffer); use plain strings, numbers, lists and mappings`,
        `${head}: spec.selector.matchLabels.x: Infinity is not a finite number`,
      ],
    },
    {
      name: 'an unknown YAML tag',
      text: `${PA_HEAD}spec: {mtls: {mode: !strict STRICT}}\n`,
      want: [`${FILE}: document 1: line 6, column 21: YAML: Unresolved tag: !strict`],
    },
    {
      name: 'flow nesting deep enough to exhaust the stack',
      text: `${PA_HEAD}---\n${'['.repeat(100_000)}\n---\n${PA_HEAD}`,
      want: [`${FILE}: document 2: line 7, column 65: nested deeper than 64 levels`],
    },
    {
      name: 'closed flow nesting',
      text: `${'{a: '.repeat(5000)}1${'}'.repeat(5000)}\n`,
      want: [`${FILE}: document 1: line 1, column 257: nested deeper than 64 levels`],
    },
    {
      name: 'compact block sequences nested on one line',
      text: `${'- '.repeat(100_000)}x\n---\n- a\n`,
      want: [`${FILE}: document 1: line 1, column 129: nested deeper than 64 levels`],
    },
    {
      name: 'block nesting by indentation',
      text: `${Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n')} 1\n`,
      want: [`${FILE}: document 1: line 258, column 257: indented more than 256 columns`],
    },
    {
      name: 'block nesting by indentation within the column limit',
      text: `${Array.from({ length: 100 }, (_, i) => `${' '.repeat(i)}a:`).join('\n')} 1\n`,
      want: [`${FILE}: document 1: line 65, column 65: nested deeper than 64 levels`],
    },
    {
      name: 'an alias bomb',
      text: `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n`,
      want: [`${FILE}: document 1: YAML: Excessive alias count indicates a resource exhaustion attack`],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const got = problems(c.text);
      assert.deepEqual(got, c.want);
      for (const line of got) assert.ok(!line.includes('\n'), `not one line: ${line}`);
    });
  }

  it('a document with several problems and a good one: nothing is returned, every problem listed', () => {
    const text = `${PA_HEAD}spec: {mtls: {mode: NOPE}}\n---\n${DR_HEAD}spec: {host: /prod/api}\n---\n${POLICY_HEAD('x')}`;
    const err = (() => {
      try {
        parse(text);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof PolicyError);
    assert.ok(err instanceof UserError, 'a UserError: the CLI prints it and exits 2');
    assert.equal(err.exitCode, 2);
    assert.equal(err.problems.length, 2);
    assert.equal(err.message, err.problems.join('\n'));
  });

  it('a flood of problems is cut in the message, kept whole in problems', () => {
    const docs = Array.from({ length: 60 }, (_, i) => `${PA_HEAD.replace('name: api', `name: api${i}`)}spec: {mtls: {mode: X}}\n`).join('---\n');
    const err = (() => {
      try {
        parse(docs);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof PolicyError);
    assert.equal(err.problems.length, 60);
    const lines = err.message.split('\n');
    assert.equal(lines.length, 51);
    assert.equal(lines[50], '... and 10 more problems');
  });

  it('the same document in two files is a conflict naming both', () => {
    const a = { file: 'a.yaml', text: `${PA_HEAD}` };
    const b = { file: 'b.yaml', text: `${DR_HEAD}spec: {host: /prod/api}\n---\n${PA_HEAD.replace('v1beta1', 'v1')}` };
    assert.throws(
      () => parsePolicySources([a, b]),
      (err: unknown) =>
        err instanceof PolicyError &&
        err.message === 'b.yaml: document 2 (PeerAuthentication prod/api): metadata.name: the same PeerAuthentication as a.yaml document 1; each kind/namespace/name may appear once',
    );
    // The same name under another kind or namespace is no conflict.
    const c = { file: 'c.yaml', text: PA_HEAD.replace('namespace: prod', 'namespace: staging') };
    assert.equal(parsePolicySources([a, { file: 'd.yaml', text: `${DR_HEAD}spec: {host: /prod/api}\n` }, c]).documents.length, 3);
  });

  it('List items are named by item', () => {
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'a' }, spec: { mtls: { mode: 'ON' } } }] });
    assert.deepEqual(problems(list, 'all.json'), ['all.json: document 1 item 1 (PeerAuthentication default/a): spec.mtls.mode: "ON" is not one of UNSET, DISABLE, PERMISSIVE, STRICT']);
  });
});
