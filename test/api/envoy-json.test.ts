/**
 * encodeEnvoyJson with a cache of Any encodings, as the xDS server encodes the generators'
 * resources: the same bytes as without it, Anys shared between resources walked once, and a
 * document with a problem still refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnyEncodings, encodeEnvoyJson, EnvoyJsonError, envoyProtoRoot } from '../../src/api/envoy-protos';
import type { JsonObject } from '../../src/common/json';
import { EnvoyGenerator } from '../../src/mesh/envoy';
import { endpoint, inputsOf, proxyOf, service, snapshotOf } from '../mesh/mesh-fixtures';
import { peerAuthentication } from '../mesh/policy/fixtures';

const LISTENER = 'envoy.config.listener.v3.Listener';

describe('encodeEnvoyJson with Any encodings kept', () => {
  const api = service({ marathonId: '/prod/api', endpoints: [endpoint('10.1.0.2', [8080])] });
  const web = service({ marathonId: '/web/front', upstreams: [{ service: '/prod/api', localPort: 15080 }] });
  const inputs = inputsOf(snapshotOf([api, web]), [peerAuthentication('istio-system', 'default', { mtls: 'STRICT' })]);
  const generator = new EnvoyGenerator();
  // Two sidecars of one service on different IPs: different inbound listeners around the same filter chains.
  const a = generator.generate(inputs, proxyOf(api, { instanceIp: '10.1.0.2' }));
  const b = generator.generate(inputs, proxyOf(api, { instanceIp: '10.1.0.3', id: 'sidecar~10.1.0.3~prod_api.2' }));
  const inboundOf = (r: typeof a) => r.listeners.find((l) => l.name.startsWith('inbound|'))!;

  it('gives the bytes it gives without the cache, for every resource of both sidecars', () => {
    const cache: AnyEncodings = new WeakMap();
    for (const r of [a, b]) {
      for (const x of [...r.clusters, ...r.endpoints, ...r.listeners, ...r.routes]) {
        const type = x.typeUrl.slice(x.typeUrl.lastIndexOf('/') + 1);
        assert.deepEqual(encodeEnvoyJson(type, x.json, cache), encodeEnvoyJson(type, x.json), `${x.name}`);
        assert.deepEqual(encodeEnvoyJson(type, x.json, cache), encodeEnvoyJson(type, x.json), `${x.name}, from the cache`);
      }
    }
  });

  it('walks an Any shared by two listeners once: the second listener takes its bytes from the cache', () => {
    const la = inboundOf(a);
    const lb = inboundOf(b);
    assert.notEqual(la, lb);
    const chain = (la.json.filter_chains as JsonObject[])[0];
    assert.equal(chain, (lb.json.filter_chains as JsonObject[])[0], 'the generator shares the chain object');
    const tls = (chain.transport_socket as JsonObject).typed_config as JsonObject;
    const cache: AnyEncodings = new WeakMap();
    encodeEnvoyJson(LISTENER, la.json, cache);
    const cached = cache.get(tls);
    assert.ok(cached, 'the DownstreamTlsContext was kept');
    const decoded = envoyProtoRoot().lookupType('envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext').decode(cached) as unknown as { require_client_certificate?: { value: boolean } };
    assert.equal(decoded.require_client_certificate?.value, true, 'STRICT: the kept bytes are the TLS context');
    // A marker in the cache shows that the second listener reads it instead of walking the JSON.
    const marker = Uint8Array.from([0x0a, 0x00]);
    cache.set(tls, marker);
    const bytes = encodeEnvoyJson(LISTENER, lb.json, cache);
    assert.notDeepEqual(bytes, encodeEnvoyJson(LISTENER, lb.json), 'the cached bytes were used');
  });

  it('refuses a document with a problem, and keeps nothing of it', () => {
    const cache: AnyEncodings = new WeakMap();
    const bad = { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 'x', clustre: 'typo' };
    const listener = { name: 'l', filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: bad }] }] };
    assert.throws(() => encodeEnvoyJson(LISTENER, listener, cache), (err: unknown) => err instanceof EnvoyJsonError && /no field "clustre"/.test(err.message));
    assert.equal(cache.has(bad), false);
    assert.throws(() => encodeEnvoyJson(LISTENER, listener, cache), EnvoyJsonError, 'still refused the second time');
  });
});
