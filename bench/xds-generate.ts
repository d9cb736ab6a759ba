/**
 * xDS generation at the mesh contract's scale: 1,000 services (two ports each) in 100
 * namespaces, 10,000 endpoints, 2,000 Envoy sidecars with 3 upstreams each (one in ten with
 * redirect capture, a quarter in files mode), mesh-wide STRICT with some PERMISSIVE namespaces
 * and DestinationRules. Figures only, no target:
 *   1. every proxy's resources from a cold generator (once in a fresh process, once more with the JIT warm);
 *   2. again after one endpoint of one service changed (a new snapshot);
 *   3. again after a new policy version (same documents, a new array);
 *   4. JSON.stringify of the distinct resources (what a server encoding each shared object once pays).
 *
 *   node dist/bench/xds-generate.js [services=1000] [endpointsPerService=10] [proxies=2000]
 */
import os from 'node:os';
import { MeshGenerator } from '../src/mesh/generator';
import type { MeshService, MeshSnapshot, ProxyNode, ServiceEndpoint } from '../src/mesh/model';
import type { PolicyDocument } from '../src/mesh/policy';
import type { GeneratedResources, MeshInputs, XdsResource } from '../src/mesh/resources';
import { workloadIdentity } from '../src/pki/identity';

const [services = 1000, perService = 10, proxyCount = 2000] = process.argv.slice(2).map(Number);
const NAMESPACES = 100;

function endpointsOf(i: number, changed = false): ServiceEndpoint[] {
  return Array.from({ length: perService }, (_, k) => ({
    instanceId: `svc-${i}.${k}`,
    host: `agent-${(i * perService + k) % 500}`,
    address: `10.${(i >> 8) & 255}.${i & 255}.${k + 10}`,
    ports: [31000 + k, 32000 + k],
    healthy: !(changed && k === 0) && k % 17 !== 16,
  }));
}

function serviceOf(i: number, changed = false): MeshService {
  const ns = `ns-${i % NAMESPACES}`;
  return {
    kind: 'app',
    marathonId: `/${ns}/svc-${i}`,
    dnsName: `svc-${i}-${ns}.marathon.mesos`,
    namespace: ns,
    serviceAccount: `sa-${i % 3}`,
    labels: { app: `svc-${i}` },
    ports: [
      { name: 'http', port: 8080, protocol: 'http' },
      { name: 'grpc', port: 9090, protocol: 'grpc' },
    ],
    endpoints: endpointsOf(i, changed),
    upstreams: [1, 7, 31].map((d, j) => ({ service: j === 1 ? `/ns-${(i + d) % services % NAMESPACES}/svc-${(i + d) % services}:grpc` : `/ns-${(i + d) % services % NAMESPACES}/svc-${(i + d) % services}`, localPort: 15000 + j })),
    hasSidecar: i % 20 !== 0,
  };
}

function snapshotOf(list: MeshService[], version: number): MeshSnapshot {
  const byId = new Map(list.map((s) => [s.marathonId, s]));
  const byName = new Map<string, MeshService>();
  for (const s of list) byName.set(s.marathonId, s).set(s.dnsName, s);
  return { version, services: byId, lookup: (n) => byName.get(n) };
}

function policies(): PolicyDocument[] {
  const docs: PolicyDocument[] = [
    { kind: 'PeerAuthentication', apiVersion: 'security.istio.io/v1beta1', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: 'STRICT', portLevelMtls: [] } },
    { kind: 'DestinationRule', apiVersion: 'networking.istio.io/v1beta1', metadata: { name: 'mesh', namespace: 'istio-system' }, spec: { host: '*.marathon.mesos', tls: { mode: 'ISTIO_MUTUAL' }, portLevelTls: [] } },
  ];
  for (let n = 0; n < NAMESPACES; n += 10) {
    docs.push({ kind: 'PeerAuthentication', apiVersion: 'security.istio.io/v1beta1', metadata: { name: 'default', namespace: `ns-${n}` }, spec: { mtls: 'PERMISSIVE', portLevelMtls: [] } });
    docs.push({ kind: 'DestinationRule', apiVersion: 'networking.istio.io/v1beta1', metadata: { name: 'plain', namespace: `ns-${n}` }, spec: { host: `svc-${n + 1}-ns-${(n + 1) % NAMESPACES}.marathon.mesos`, tls: { mode: 'DISABLE' }, portLevelTls: [] } });
  }
  return docs;
}

function proxies(list: MeshService[]): ProxyNode[] {
  return Array.from({ length: proxyCount }, (_, p) => {
    const s = list[p % list.length];
    const e = s.endpoints[Math.floor(p / list.length) % s.endpoints.length];
    return {
      id: `sidecar~${e.address}~${e.instanceId}`,
      generator: 'envoy',
      marathonId: s.marathonId,
      identity: workloadIdentity('cluster.local', s.namespace, s.serviceAccount),
      certMode: p % 4 === 3 ? 'files' : 'sds',
      capture: p % 10 === 9 ? 'redirect' : 'explicit',
      instanceIp: e.address,
    };
  });
}

function round(generator: MeshGenerator, inputs: MeshInputs, nodes: ProxyNode[]): { ms: number; results: GeneratedResources[] } {
  const t0 = performance.now();
  const results = nodes.map((n) => generator.generate(inputs, n));
  return { ms: performance.now() - t0, results };
}

function distinct(results: GeneratedResources[]): { refs: number; unique: Set<XdsResource> } {
  const unique = new Set<XdsResource>();
  let refs = 0;
  for (const r of results) {
    for (const list of [r.clusters, r.endpoints, r.listeners, r.routes, r.secrets]) {
      refs += list.length;
      for (const x of list) unique.add(x);
    }
  }
  return { refs, unique };
}

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const list = Array.from({ length: services }, (_, i) => serviceOf(i));
const nodes = proxies(list);
const docs = policies();
const inputs: MeshInputs = { snapshot: snapshotOf(list, 1), policies: docs, trustDomain: 'cluster.local', rootNamespace: 'istio-system' };
process.stdout.write(
  `mesh: ${services} services, ${services * perService} endpoints, ${nodes.length} Envoy proxies with 3 upstreams each, ${docs.length} policy documents; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`,
);

const generator = new MeshGenerator();
const cold = round(generator, inputs, nodes);
const d = distinct(cold.results);
process.stdout.write(`cold: every proxy's resources in ${fmt(cold.ms)} (${(cold.ms / nodes.length * 1000).toFixed(0)} µs a proxy); ${d.refs} resources referenced, ${d.unique.size} distinct objects\n`);
const warnings = cold.results.reduce((n, r) => n + r.warnings.length, 0);
if (warnings > 0) process.stdout.write(`  (${warnings} warnings, e.g. ${cold.results.find((r) => r.warnings.length)!.warnings[0]})\n`);

const warm = round(new MeshGenerator(), inputs, nodes);
process.stdout.write(`cold again, a new generator in a warmed-up process: ${fmt(warm.ms)}\n`);

const t0 = performance.now();
let bytes = 0;
for (const r of d.unique) bytes += JSON.stringify(r.json).length;
process.stdout.write(`JSON of the distinct resources: ${fmt(performance.now() - t0)}, ${(bytes / 1e6).toFixed(1)} MB\n`);

const same = round(generator, inputs, nodes);
process.stdout.write(`unchanged inputs again: ${fmt(same.ms)} (${same.results.filter((r, i) => r === cold.results[i]).length} of ${nodes.length} results reused)\n`);

const changedIndex = 42;
const changedList = list.map((s, i) => (i === changedIndex ? serviceOf(i, true) : s));
const afterChange = round(generator, { ...inputs, snapshot: snapshotOf(changedList, 2) }, nodes);
const rebuilt = afterChange.results.filter((r, i) => r !== cold.results[i]).length;
const before = distinct(cold.results).unique;
const fresh = [...distinct(afterChange.results).unique].filter((x) => !before.has(x));
process.stdout.write(
  `after one endpoint change (${changedList[changedIndex].marathonId}): ${fmt(afterChange.ms)}; ${rebuilt} proxies got new results, ${fresh.length} new resource objects (${summary(fresh)})\n`,
);

const afterPolicy = round(generator, { ...inputs, snapshot: snapshotOf(changedList, 2), policies: [...docs] }, nodes);
const freshAfterPolicy = [...distinct(afterPolicy.results).unique].filter((x) => !distinct(afterChange.results).unique.has(x));
process.stdout.write(`after a new policy version (same documents): ${fmt(afterPolicy.ms)}; ${freshAfterPolicy.length} new resource objects (${summary(freshAfterPolicy)})\n`);

const stats = generator.envoy.stats;
process.stdout.write(
  `memo: ${stats.clusterBuilds} outbound clusters built, ${stats.clusterHits} reused; ${stats.endpointBuilds} assignments built, ${stats.endpointHits} reused; heap ${(process.memoryUsage().heapUsed / 1e6).toFixed(0)} MB\n`,
);

function summary(resources: XdsResource[]): string {
  const counts = new Map<string, number>();
  for (const r of resources) {
    const t = r.typeUrl.slice(r.typeUrl.lastIndexOf('.') + 1);
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return [...counts].map(([t, n]) => `${n} ${t}`).join(', ') || 'none';
}
