/** The discovery protocol module on its own: what it sends for each request, with a source we control. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DiscoveryRequest, DiscoveryResponse } from '../../src/api/discovery';
import { TYPE_URL } from '../../src/mesh/resources';
import { ADS_ORDER } from '../../src/server/xds-server';
import { DiscoveryStream, Resource, StreamError, Subscription, syncStatus } from '../../src/xds/discovery-stream';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const RDS = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
const SDS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/** Resources by type, changed by the test; undefined = not ready. */
class Source {
  data = new Map<string, Map<string, Resource> | undefined>();
  set(typeUrl: string, entries: Record<string, string> | undefined) {
    this.data.set(typeUrl, entries && new Map(Object.entries(entries).map(([name, version]) => [name, { name, version, value: Buffer.from(version) }])));
  }
  resources(typeUrl: string, sub: Subscription) {
    const all = this.data.get(typeUrl);
    if (!all) return undefined;
    return sub.wildcard ? all : new Map([...all].filter(([n]) => sub.names.has(n)));
  }
}

function harness(typeOrder: readonly string[] = [CDS, EDS, LDS]) {
  const source = new Source();
  const sent: DiscoveryResponse[] = [];
  const nacks: string[] = [];
  const stream = new DiscoveryStream({
    source,
    send: (r) => sent.push(r),
    typeOrder,
    isWildcardType: (t) => t === CDS || t === LDS,
    onNack: (_t, m) => nacks.push(m),
  });
  const req = (r: Partial<DiscoveryRequest>) => stream.receive({ versionInfo: '', resourceNames: [], typeUrl: '', responseNonce: '', ...r });
  const ack = (r: DiscoveryResponse, names: string[] = []) => req({ typeUrl: r.typeUrl, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: names });
  const namesOf = (r: DiscoveryResponse) => r.resources.map((x) => x.name);
  return { source, sent, nacks, stream, req, ack, namesOf };
}

describe('DiscoveryStream', () => {
  it('keeps the node of the first message that carries one; later ones may omit it or say otherwise', () => {
    const h = harness();
    h.source.set(CDS, { a: '1' });
    h.req({ typeUrl: CDS, node: { id: 'sidecar~10.0.0.1~a', cluster: '/a' } as DiscoveryRequest['node'] });
    h.ack(h.sent[0]);
    h.req({ typeUrl: LDS, node: { id: 'sidecar~10.0.0.9~other', cluster: '/other' } as DiscoveryRequest['node'] });
    assert.equal(h.stream.node?.id, 'sidecar~10.0.0.1~a');
  });

  it('answers the first request when the source is ready, and no sooner', () => {
    const h = harness();
    h.req({ typeUrl: EDS, resourceNames: ['c1'] });
    assert.equal(h.sent.length, 0, 'not ready: nothing sent');
    assert.equal(syncStatus(h.stream.state().get(EDS)!), 'NOT SENT');
    h.source.set(EDS, { c1: 'v1', c2: 'v1' });
    h.stream.refresh();
    assert.deepEqual(h.sent.map(h.namesOf), [['c1']], 'only the name asked for');
    assert.equal(syncStatus(h.stream.state().get(EDS)!), 'STALE');
    h.ack(h.sent[0], ['c1']);
    assert.equal(syncStatus(h.stream.state().get(EDS)!), 'SYNCED');
    assert.equal(h.sent.length, 1, 'an ACK gets no answer');
  });

  it('a stale nonce is ignored; a NACK is recorded and never answered with the same content, only with new content', () => {
    const h = harness();
    h.source.set(EDS, { c1: 'v1' });
    h.req({ typeUrl: EDS, resourceNames: ['c1'] });
    h.source.set(EDS, { c1: 'v2' });
    h.stream.refresh();
    assert.equal(h.sent.length, 2);
    h.req({ typeUrl: EDS, versionInfo: h.sent[0].versionInfo, responseNonce: h.sent[0].nonce, resourceNames: ['c1', 'c2'] });
    assert.equal(h.sent.length, 2, 'a request answering an older response is stale: ignored, even with new names');
    h.req({ typeUrl: EDS, versionInfo: h.sent[0].versionInfo, responseNonce: h.sent[1].nonce, resourceNames: ['c1'], errorDetail: { code: 13, message: 'bad endpoint' } });
    assert.deepEqual(h.nacks, ['bad endpoint']);
    const st = h.stream.state().get(EDS)!;
    assert.equal(syncStatus(st), 'NACKED');
    assert.equal(st.ackedVersion, h.sent[0].versionInfo, 'the client keeps what it accepted last');
    h.stream.refresh();
    assert.equal(h.sent.length, 2, 'the refused content is not sent again');
    h.source.set(EDS, { c1: 'v3' });
    h.stream.refresh();
    assert.equal(h.sent.length, 3, 'new content is');
    h.ack(h.sent[2], ['c1']);
    assert.equal(syncStatus(h.stream.state().get(EDS)!), 'SYNCED');
  });

  it('added names get only the added resources; a wildcard type gets the whole set when any of it changes', () => {
    const h = harness();
    h.source.set(EDS, { c1: 'v1', c2: 'v1' });
    h.req({ typeUrl: EDS, resourceNames: ['c1'] });
    h.ack(h.sent[0], ['c1', 'c2']);
    assert.deepEqual(h.namesOf(h.sent[1]), ['c2']);
    h.source.set(CDS, { a: '1', b: '1' });
    h.req({ typeUrl: CDS });
    h.ack(h.sent[2]);
    h.source.set(CDS, { a: '1', b: '2' });
    h.stream.refresh([CDS]);
    assert.deepEqual(h.namesOf(h.sent[3]), ['a', 'b'], 'a missing cluster would mean removed: all of them');
    h.stream.refresh([CDS]);
    assert.equal(h.sent.length, 4, 'nothing changed: nothing sent');
  });

  it('several types changed at once go out in type order (ADS: CDS before EDS before LDS)', () => {
    const h = harness();
    for (const t of [LDS, EDS, CDS]) h.source.set(t, { x: '1' });
    h.req({ typeUrl: LDS });
    h.ack(h.sent[0]);
    h.req({ typeUrl: EDS, resourceNames: ['x'] });
    h.ack(h.sent[1], ['x']);
    h.req({ typeUrl: CDS });
    h.ack(h.sent[2]);
    for (const t of [LDS, EDS, CDS]) h.source.set(t, { x: '2' });
    h.stream.refresh();
    assert.deepEqual(h.sent.slice(3).map((r) => r.typeUrl), [CDS, EDS, LDS]);
  });

  it('the xDS server’s ADS order: CDS, EDS, LDS, RDS, then the files-mode secrets (SDS) last, whatever order they were asked in', () => {
    assert.deepEqual(ADS_ORDER, [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route, TYPE_URL.secret]);
    assert.deepEqual([TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.listener, TYPE_URL.route, TYPE_URL.secret], [CDS, EDS, LDS, RDS, SDS], 'the type URLs Envoy sends');
    const h = harness(ADS_ORDER);
    const named = new Set([EDS, RDS, SDS]);
    for (const t of [SDS, RDS, LDS, EDS, CDS]) h.source.set(t, { x: '1' });
    for (const t of [SDS, RDS, LDS, EDS, CDS]) {
      h.req({ typeUrl: t, resourceNames: named.has(t) ? ['x'] : [] });
      h.ack(h.sent[h.sent.length - 1], named.has(t) ? ['x'] : []);
    }
    assert.deepEqual(h.sent.map((r) => r.typeUrl), [SDS, RDS, LDS, EDS, CDS], 'first requests are answered as they come');
    for (const t of [SDS, RDS, LDS, EDS, CDS]) h.source.set(t, { x: '2' });
    h.stream.refresh();
    assert.deepEqual(h.sent.slice(5).map((r) => r.typeUrl), [CDS, EDS, LDS, RDS, SDS]);
    assert.ok(h.sent.slice(5).every((r) => r.resources[0].value.toString() === '2'), 'each with the new content');
    // A change to routes and clusters only: those two, clusters first.
    for (const t of [RDS, CDS]) h.source.set(t, { x: '3' });
    h.stream.refresh();
    assert.deepEqual(h.sent.slice(10).map((r) => r.typeUrl), [CDS, RDS]);
  });

  it('a request without type_url ends the stream with INVALID_ARGUMENT', () => {
    const h = harness();
    assert.throws(() => h.req({ typeUrl: '' }), (e: unknown) => e instanceof StreamError && e.code === 3 && /without type_url/.test(e.message));
  });
});
