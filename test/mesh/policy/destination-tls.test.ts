import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveDestinationTls, type DestinationTls, type PolicyDocument, type TlsDestination } from '../../../src/mesh/policy';
import { at, destinationRule, peerAuthentication } from './fixtures';

const mesosDns = 'api-payments-prod.marathon.mesos';
const marathonId = '/prod/payments/api';
/** A client in `web` dialling the api by its Mesos-DNS name, knowing its Marathon id too. */
const toApi: TlsDestination = { host: mesosDns, aliases: [marathonId], port: 8080, clientNamespace: 'web' };

const istio = { mode: 'ISTIO_MUTUAL' } as const;
const plain = { mode: 'DISABLE' } as const;
const simple = { mode: 'SIMPLE' } as const;

interface Row {
  name: string;
  policies: PolicyDocument[];
  destination?: Partial<TlsDestination>;
  /** The rule's namespace/name and mode, or undefined for auto-mTLS. */
  want: `${string}/${string} ${string}` | undefined;
}

const rows: Row[] = [
  { name: 'no rule: auto-mTLS', policies: [], want: undefined },
  { name: 'a rule for another host: auto-mTLS', policies: [destinationRule('prod', 'web', '/prod/web', istio)], want: undefined },
  { name: 'exact Marathon id', policies: [destinationRule('prod', 'api', marathonId, istio)], want: 'prod/api ISTIO_MUTUAL' },
  { name: 'exact Mesos-DNS name', policies: [destinationRule('prod', 'api', mesosDns, plain)], want: 'prod/api DISABLE' },
  { name: 'the Marathon id alone, without aliases', policies: [destinationRule('prod', 'api', marathonId, istio)], destination: { host: marathonId, aliases: [] }, want: 'prod/api ISTIO_MUTUAL' },
  { name: 'host names compare without case', policies: [destinationRule('prod', 'api', mesosDns, istio)], destination: { host: 'API-Payments-Prod.Marathon.Mesos', aliases: [] }, want: 'prod/api ISTIO_MUTUAL' },
  { name: 'wildcard *.marathon.mesos', policies: [destinationRule('ops', 'all', '*.marathon.mesos', istio)], want: 'ops/all ISTIO_MUTUAL' },
  { name: 'a wildcard does not match the bare suffix', policies: [destinationRule('ops', 'all', '*.marathon.mesos', istio)], destination: { host: 'marathon.mesos', aliases: [] }, want: undefined },
  { name: 'a DNS wildcard never matches a Marathon id', policies: [destinationRule('ops', 'all', '*.marathon.mesos', istio)], destination: { host: marathonId, aliases: [] }, want: undefined },
  { name: '* matches a Marathon id too', policies: [destinationRule('ops', 'all', '*', istio)], destination: { host: marathonId, aliases: [] }, want: 'ops/all ISTIO_MUTUAL' },
  {
    name: 'most specific wins: exact over wildcards',
    policies: [destinationRule('ops', 'any', '*', plain), destinationRule('ops', 'mesos', '*.mesos', plain), destinationRule('ops', 'marathon', '*.marathon.mesos', plain), destinationRule('ops', 'api', mesosDns, istio)],
    want: 'ops/api ISTIO_MUTUAL',
  },
  {
    name: 'most specific wins: the longer wildcard',
    policies: [destinationRule('ops', 'any', '*', plain), destinationRule('ops', 'mesos', '*.mesos', plain), destinationRule('ops', 'marathon', '*.marathon.mesos', istio)],
    want: 'ops/marathon ISTIO_MUTUAL',
  },
  { name: 'most specific wins: *.mesos over *', policies: [destinationRule('ops', 'any', '*', plain), destinationRule('ops', 'mesos', '*.mesos', istio)], want: 'ops/mesos ISTIO_MUTUAL' },
  {
    name: "the client's namespace beats elsewhere, even less specific",
    policies: [destinationRule('prod', 'api', mesosDns, istio), destinationRule('web', 'everything', '*', plain)],
    want: 'web/everything DISABLE',
  },
  {
    name: "elsewhere, when the client's namespace has no matching rule",
    policies: [destinationRule('prod', 'api', mesosDns, istio), destinationRule('web', 'other', '/prod/other', plain)],
    want: 'prod/api ISTIO_MUTUAL',
  },
  {
    name: 'equal hosts elsewhere: the oldest wins',
    policies: [destinationRule('b', 'api', mesosDns, istio, {}, at(2)), destinationRule('a', 'api', mesosDns, plain, {}, at(3)), destinationRule('c', 'api', mesosDns, simple, {}, at(1))],
    want: 'c/api SIMPLE',
  },
  {
    name: 'equal hosts, same age: the first name wins',
    policies: [destinationRule('prod', 'zz', mesosDns, istio, {}, at(1)), destinationRule('prod', 'aa', mesosDns, plain, {}, at(1))],
    want: 'prod/aa DISABLE',
  },
  {
    name: 'an exact match by alias and one by host are equally specific: the oldest wins',
    policies: [destinationRule('prod', 'by-dns', mesosDns, istio, {}, at(2)), destinationRule('prod', 'by-id', marathonId, plain, {}, at(1))],
    want: 'prod/by-id DISABLE',
  },
  {
    name: 'portLevelSettings beat trafficPolicy.tls for their port',
    policies: [destinationRule('prod', 'api', mesosDns, istio, { 8080: plain })],
    want: 'prod/api DISABLE',
  },
  {
    name: 'trafficPolicy.tls for the other ports',
    policies: [destinationRule('prod', 'api', mesosDns, istio, { 8080: plain })],
    destination: { port: 9090 },
    want: 'prod/api ISTIO_MUTUAL',
  },
  { name: 'port-level only, another port: auto-mTLS', policies: [destinationRule('prod', 'api', mesosDns, undefined, { 9090: istio })], want: undefined },
  {
    name: 'the chosen rule sets no tls: auto-mTLS, a less specific rule is not consulted (one rule per host, as Istio)',
    policies: [destinationRule('prod', 'api', mesosDns, undefined), destinationRule('prod', 'all', '*.marathon.mesos', plain)],
    want: undefined,
  },
  { name: 'PeerAuthentications play no part', policies: [peerAuthentication('web', 'default', { mtls: 'STRICT' })], want: undefined },
];

function summary(tls: DestinationTls | undefined): string | undefined {
  return tls === undefined ? undefined : `${tls.rule.namespace}/${tls.rule.name} ${tls.mode}`;
}

describe('resolveDestinationTls: client namespace first, most specific host, oldest, port level', () => {
  for (const row of rows) {
    it(row.name, () => {
      assert.equal(summary(resolveDestinationTls(row.policies, { ...toApi, ...row.destination })), row.want);
    });
  }

  it('the order of the policy list does not matter', () => {
    for (const row of rows) {
      assert.equal(summary(resolveDestinationTls([...row.policies].reverse(), { ...toApi, ...row.destination })), row.want, row.name);
    }
  });

  it('returns the settings of SIMPLE and MUTUAL with the rule they came from', () => {
    const mutual = {
      mode: 'MUTUAL',
      clientCertificate: '/etc/certs/client.pem',
      privateKey: '/etc/certs/client-key.pem',
      caCertificates: '/etc/certs/ca.pem',
      subjectAltNames: ['db.example.com'],
      sni: 'db.example.com',
    } as const;
    const rule = destinationRule('prod', 'db', 'db.example.com', { mode: 'SIMPLE', caCertificates: '/etc/ssl/ca.pem' }, { 5432: mutual });
    assert.deepEqual(resolveDestinationTls([rule], { host: 'db.example.com', port: 5432, clientNamespace: 'prod' }), {
      ...mutual,
      rule: { namespace: 'prod', name: 'db' },
    });
    assert.deepEqual(resolveDestinationTls([rule], { host: 'db.example.com', port: 443, clientNamespace: 'prod' }), {
      mode: 'SIMPLE',
      caCertificates: '/etc/ssl/ca.pem',
      rule: { namespace: 'prod', name: 'db' },
    });
  });
});
