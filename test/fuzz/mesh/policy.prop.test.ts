/**
 * Property tests: generated valid documents round-trip through the canonical form, YAML and JSON;
 * random text and mutated documents only ever raise PolicyError. A few hundred runs in `npm test`;
 * CITADEL_FUZZ_RUNS (`npm run fuzz`) runs more.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import {
  formatPolicyJson,
  formatPolicyYaml,
  fromCanonical,
  parsePolicyText,
  policyKey,
  PolicyError,
  toCanonical,
  type ClientTlsSettings,
  type DestinationRule,
  type Labels,
  type MeshPolicy,
  type ObjectMeta,
  type PeerAuthentication,
  type Policy,
  type PolicyDocument,
  type PortSelector,
} from '../../../src/mesh/policy';
import { fuzzParameters } from '../../helpers/fuzz';


// Strings YAML would read as something else unless quoted: the writer must quote them.
const yamlLookalikes = fc.constantFrom('null', 'true', 'yes', 'No', 'on', '1e3', '0x1F', '0o17', '012', '1.50', 'NaN', 'Infinity', '1_000', 'y', '2024-05-01');
const dnsLabel = fc.oneof(fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/), fc.constantFrom('null', 'true', '012', '1e3'));
const dnsName = fc.array(dnsLabel, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));
const marathonId = fc.array(dnsLabel, { minLength: 1, maxLength: 4 }).map((segments) => `/${segments.join('/')}`);
const serviceName = fc.oneof(marathonId, dnsName);
const host = fc.oneof(serviceName, dnsName.map((n) => `*.${n}`), fc.constant('*'));
const port = fc.integer({ min: 1, max: 65535 });
const labelName = fc.oneof(fc.stringMatching(/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$/), yamlLookalikes);
const labelKey = fc.tuple(fc.option(dnsName, { nil: undefined }), labelName).map(([prefix, name]) => (prefix === undefined ? name : `${prefix}/${name}`));
const labelValue = fc.oneof(labelName, fc.constant(''));
const labels = (minKeys: number): fc.Arbitrary<Labels> => fc.dictionary(labelKey, labelValue, { minKeys, maxKeys: 4, noNullPrototype: true });
/** Any text at all, including control characters, quotes, newlines and astral code points. */
const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 24 }), yamlLookalikes, fc.constantFrom(' lead', 'trail ', '#x', '- a', 'a: b', '"q"', "'", '\t', '\r\n', '\u0085', '\u2028', '\ufeffbom'));
const path = fc.oneof(anyText.filter((s) => s !== ''), fc.constantFrom('/etc/certs/cert-chain.pem', '/etc/certs/key.pem'));
const timestamp = fc
  .tuple(fc.integer({ min: -62_135_596_800_000, max: 4_102_444_800_000 }), fc.boolean())
  .map(([ms, fraction]) => {
    const iso = new Date(ms).toISOString();
    return fraction ? iso : iso.replace(/\.\d{3}Z$/, 'Z');
  })
  .filter((iso) => /^\d{4}-/.test(iso));

const meta = fc.record(
  {
    name: dnsName,
    creationTimestamp: timestamp,
    labels: labels(1),
    annotations: fc.dictionary(labelKey, anyText, { minKeys: 1, maxKeys: 3, noNullPrototype: true }),
  },
  { requiredKeys: ['name'] },
);

const portSelector: fc.Arbitrary<PortSelector> = fc.oneof(
  port.map((number) => ({ number })),
  fc.stringMatching(/^[a-z][-a-z0-9]{0,8}$/).map((name) => ({ name })),
);
const target = fc.record({ name: serviceName, ports: fc.array(portSelector, { maxLength: 3 }) });
const alphaMode = fc.option(fc.constantFrom('STRICT' as const, 'PERMISSIVE' as const), { nil: undefined });

const meshPolicy: fc.Arbitrary<MeshPolicy> = fc.tuple(meta, alphaMode).map(([m, peerMtls]) => ({
  kind: 'MeshPolicy',
  apiVersion: 'authentication.istio.io/v1alpha1',
  metadata: { ...m, name: 'default' },
  spec: { targets: [], ...(peerMtls && { peerMtls }) },
}));

const policy: fc.Arbitrary<Policy> = fc
  .tuple(meta, dnsLabel, fc.array(target, { maxLength: 3 }), alphaMode)
  .map(([m, namespace, targets, peerMtls]) => ({
    kind: 'Policy',
    apiVersion: 'authentication.istio.io/v1alpha1',
    metadata: { ...m, name: targets.length === 0 ? 'default' : m.name === 'default' ? 'targeted' : m.name, namespace },
    spec: { targets, ...(peerMtls && { peerMtls }) },
  }));

const peerMode = fc.constantFrom('UNSET' as const, 'DISABLE' as const, 'PERMISSIVE' as const, 'STRICT' as const);
const peerAuthentication: fc.Arbitrary<PeerAuthentication> = fc
  .tuple(meta, dnsLabel, fc.constantFrom('security.istio.io/v1beta1' as const, 'security.istio.io/v1' as const), fc.option(labels(1), { nil: undefined }), peerMode, fc.uniqueArray(fc.record({ port, mode: peerMode }), { selector: (p) => p.port, maxLength: 3 }))
  .map(([m, namespace, apiVersion, selector, mtls, ports]) => ({
    kind: 'PeerAuthentication',
    apiVersion,
    metadata: { ...m, namespace },
    spec: {
      ...(selector && { selector }),
      mtls,
      portLevelMtls: selector === undefined ? [] : [...ports].sort((a, b) => a.port - b.port),
    },
  }));

const sans = fc.option(fc.array(path, { minLength: 1, maxLength: 2 }), { nil: undefined });
const clientTls: fc.Arbitrary<ClientTlsSettings> = fc.oneof(
  fc.constant({ mode: 'DISABLE' as const }),
  fc.record({ subjectAltNames: sans, sni: path }, { requiredKeys: [] }).map((t) => ({ mode: 'ISTIO_MUTUAL' as const, ...defined(t) })),
  fc.record({ caCertificates: path, subjectAltNames: sans, sni: path }, { requiredKeys: [] }).map((t) => ({ mode: 'SIMPLE' as const, ...defined(t) })),
  fc
    .record({ clientCertificate: path, privateKey: path, caCertificates: path, subjectAltNames: sans, sni: path }, { requiredKeys: ['clientCertificate', 'privateKey'] })
    .map((t) => ({ mode: 'MUTUAL' as const, ...defined(t) }) as ClientTlsSettings),
);
const destinationRule: fc.Arbitrary<DestinationRule> = fc
  .tuple(
    meta,
    dnsLabel,
    fc.constantFrom('networking.istio.io/v1alpha3' as const, 'networking.istio.io/v1beta1' as const, 'networking.istio.io/v1' as const),
    host,
    fc.option(clientTls, { nil: undefined }),
    fc.uniqueArray(fc.record({ port, tls: clientTls }), { selector: (p) => p.port, maxLength: 3 }),
  )
  .map(([m, namespace, apiVersion, h, tls, portLevelTls]) => ({
    kind: 'DestinationRule',
    apiVersion,
    metadata: { ...m, namespace },
    spec: { host: h, ...(tls && { tls }), portLevelTls: [...portLevelTls].sort((a, b) => a.port - b.port) },
  }));

// fast-check builds null-prototype records; the parser builds plain objects, and deepEqual compares prototypes.
const document: fc.Arbitrary<PolicyDocument> = fc.oneof(meshPolicy, policy, peerAuthentication, destinationRule).map((d) => structuredClone(d));
const documentSet = fc.uniqueArray(document, { selector: policyKey, minLength: 1, maxLength: 4 });

/** Drops the keys whose value is undefined (fc.record with optional keys leaves none, but be sure). */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** Parsing may fail only with a PolicyError whose every problem is one line. */
function onlyPolicyErrors(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    for (const line of err.problems) assert.ok(line.length > 0 && !/[\n\r\u0085\u2028\u2029]/.test(line), `not one line: ${JSON.stringify(line)}`);
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Step = string | number;

/** Every path in a JSON value, the root included. */
function pathsOf(value: Json, prefix: Step[] = []): Step[][] {
  const out: Step[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...pathsOf(v, [...prefix, i])));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]));
  return out;
}

function get(root: Json, steps: Step[]): Json {
  let v: Json = root;
  for (const s of steps) v = (v as Record<string | number, Json>)[s];
  return v;
}

/** Returns a copy of root with the value at steps replaced (or removed when replacement is undefined). */
function set(root: Json, steps: Step[], replacement: Json | undefined): Json | undefined {
  if (steps.length === 0) return replacement;
  const [head, ...rest] = steps;
  if (Array.isArray(root)) {
    const copy = [...root];
    const next = set(copy[head as number], rest, replacement);
    if (next === undefined) copy.splice(head as number, 1);
    else copy[head as number] = next;
    return copy;
  }
  const copy = { ...(root as Record<string, Json>) };
  const next = set(copy[head as string], rest, replacement);
  if (next === undefined) delete copy[head as string];
  else Object.defineProperty(copy, head, { value: next, enumerable: true, writable: true, configurable: true });
  return copy;
}

const weirdValue: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
  fc.constantFrom<Json>(null, '', 0, -1, 65536, 1.5, 1e308, true, [], {}, 'STRICTT', 'default', '__proto__', '*', '/', { mode: 'STRICT' }, [{ mtls: null }], { number: 0 }),
);

type Mutation =
  | { kind: 'remove'; at: number }
  | { kind: 'replace'; at: number; value: Json }
  | { kind: 'swap'; at: number; with: number }
  | { kind: 'rename'; at: number; name: string }
  | { kind: 'add'; at: number; name: string; value: Json };

const fieldName = fc.oneof(fc.constantFrom('mode', 'mtls', 'selector', 'matchLabels', 'host', 'tls', 'targets', 'peers', 'ports', 'number', 'name', 'namespace', 'kind', '__proto__', 'constructor'), fc.string({ maxLength: 8 }));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), value: weirdValue }),
  fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }),
  fc.record({ kind: fc.constant('rename' as const), at: fc.nat(), name: fieldName }),
  fc.record({ kind: fc.constant('add' as const), at: fc.nat(), name: fieldName, value: weirdValue }),
);

function mutate(root: Json, m: Mutation): Json {
  const paths = pathsOf(root);
  const target = paths[m.at % paths.length];
  switch (m.kind) {
    case 'remove':
      return set(root, target, undefined) ?? null;
    case 'replace':
      return set(root, target, m.value) ?? null;
    case 'swap': {
      const other = paths[m.with % paths.length];
      // Swapping a value into its own subtree is undefined; swap values of unrelated paths only.
      const related = (a: Step[], b: Step[]): boolean => a.every((s, i) => b[i] === s) || b.every((s, i) => a[i] === s);
      if (related(target, other)) return root;
      const a = get(root, target);
      const b = get(root, other);
      return set(set(root, target, b) ?? null, other, a) ?? null;
    }
    case 'rename': {
      if (target.length === 0 || typeof target[target.length - 1] !== 'string') return root;
      const parentPath = target.slice(0, -1);
      const value = get(root, target);
      const removed = set(root, target, undefined) ?? null;
      const parent = get(removed, parentPath);
      return set(removed, parentPath, { ...(parent as Record<string, Json>), [m.name]: value }) ?? null;
    }
    case 'add': {
      const at = get(root, target);
      if (at === null || typeof at !== 'object' || Array.isArray(at)) return root;
      return set(root, target, { ...at, [m.name]: m.value }) ?? null;
    }
  }
}

describe('property: valid documents round-trip', () => {
  it('typed -> canonical -> JSON text -> typed', () => {
    fc.assert(
      fc.property(document, (doc) => {
        assert.deepEqual(fromCanonical(JSON.parse(JSON.stringify(toCanonical(doc))), 'store'), doc);
      }),
      fuzzParameters(200),
    );
  });

  it('typed -> YAML -> parser, and typed -> JSON -> parser, with no warnings', () => {
    fc.assert(
      fc.property(documentSet, (docs) => {
        const fromYaml = parsePolicyText(formatPolicyYaml(docs), 'get.yaml');
        assert.deepEqual(fromYaml.documents, docs);
        assert.deepEqual(fromYaml.warnings, []);
        assert.deepEqual(parsePolicyText(formatPolicyJson(docs), 'get.json').documents, docs);
      }),
      fuzzParameters(100), // sets of up to 4 documents: as many documents as the other properties
    );
  });
});

describe('property: bad input only ever raises PolicyError', () => {
  it('random text', () => {
    const yamlish = fc
      .array(fc.constantFrom('kind: ', 'Policy', 'PeerAuthentication', 'apiVersion: ', 'security.istio.io/v1beta1', 'metadata:', 'spec:', '\n', '  ', '- ', ': ', '---\n', '{', '}', '[', ']', ',', '&a ', '*a', '!!binary ', '!x ', '"', "'", '#', '|\n', '>\n', '? ', '%YAML 1.2\n', '\t', 'mtls: ', 'null', '~', '8080: ', '<<: '), { maxLength: 40 })
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), yamlish), (text) => {
        onlyPolicyErrors(() => parsePolicyText(text, 'random.yaml'));
      }),
      fuzzParameters(400),
    );
  });

  it('mutated valid documents (fields removed, renamed, added, types swapped, values shuffled), as objects and as YAML', () => {
    fc.assert(
      fc.property(document, fc.array(mutation, { minLength: 1, maxLength: 3 }), (doc, mutations) => {
        const mutated = mutations.reduce((value, m) => mutate(value, m), toCanonical(doc) as unknown as Json);
        onlyPolicyErrors(() => fromCanonical(mutated, 'store'));
        onlyPolicyErrors(() => parsePolicyText(stringify(mutated), 'mutated.yaml'));
        onlyPolicyErrors(() => parsePolicyText(JSON.stringify(mutated), 'mutated.json'));
      }),
      fuzzParameters(200),
    );
  });

  it('a mutation that breaks a rule is caught, not passed through (the property can fail)', () => {
    const doc = toCanonical({
      kind: 'PeerAuthentication',
      apiVersion: 'security.istio.io/v1beta1',
      metadata: { name: 'api', namespace: 'prod' },
      spec: { mtls: 'STRICT', portLevelMtls: [] },
    }) as unknown as Json;
    const broken = mutate(doc, { kind: 'replace', at: pathsOf(doc).findIndex((p) => p.join('.') === 'spec.mtls.mode'), value: 'STRICTT' });
    assert.throws(() => fromCanonical(broken, 'store'), PolicyError);
    const renamed = mutate(doc, { kind: 'rename', at: pathsOf(doc).findIndex((p) => p.join('.') === 'spec.mtls'), name: 'mTLS' });
    assert.throws(() => fromCanonical(renamed, 'store'), /spec\.mTLS: unknown field/);
  });
});
