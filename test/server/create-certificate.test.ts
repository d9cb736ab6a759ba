import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CertificateAuthority, createSelfSignedRoot } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { createPrivateKey } from 'node:crypto';
import { parseCertificatePem } from '../../src/pki/certificate';
import { spkiDer } from '../../src/pki/keys';
import { identityOfCertificate, svidProblems, verifyChain } from '../../src/pki/verify';
import { CaFixture, clientFor, credentialFor, csrFor, node, placeApp, removeApp, spiffeId, startCaFixture, workload } from './fixtures';

const code = async (p: Promise<unknown>): Promise<number> => {
  try {
    await p;
  } catch (err) {
    return (err as { code: number }).code;
  }
  return status.OK;
};

describe('IstioCertificateService/CreateCertificate over mTLS', () => {
  let f: CaFixture;
  before(async () => {
    f = await startCaFixture();
  });
  after(() => f.close());

  const issuedCount = async () => (await f.registry.getSingleMetric('citadel_server_success_cert_issuance_count')!.get()).values[0]?.value ?? 0;

  it('a workload renews its own identity: leaf first, root last, SAN from the caller', async () => {
    const me = workload('prod', 'payments');
    const client = clientFor(f, credentialFor(f.ca, me));
    try {
      const { csr } = csrFor(spiffeId(me));
      const chain = await client.createCertificate(csr, 3600);
      assert.equal(chain.length, 2);
      assert.equal(chain[1], f.ca.rootCertPem);
      const check = verifyChain(chain[0], f.ca.rootCertPem);
      assert.ok(check.ok, check.problems.join('; '));
      const leaf = parseCertificatePem(chain[0]);
      assert.equal(spiffeId(identityOfCertificate(leaf)), 'spiffe://cluster.local/ns/prod/sa/payments');
      assert.deepEqual(svidProblems(leaf), []);
      const lifetime = leaf.notAfter.getTime() - Date.now();
      assert.ok(lifetime > 3500_000 && lifetime <= 3600_000, `lifetime ${lifetime}`);
    } finally {
      client.close();
    }
  });

  it('a non-positive TTL gets the default; above the maximum is INVALID_ARGUMENT', async () => {
    const me = workload('prod', 'ttl');
    const client = clientFor(f, credentialFor(f.ca, me));
    try {
      const chain = await client.createCertificate(csrFor(spiffeId(me)).csr, -5);
      const lifetime = parseCertificatePem(chain[0]).notAfter.getTime() - Date.now();
      assert.ok(Math.abs(lifetime - DEFAULT_CA_CONFIG.workloadCertTtlMs) < 5000, `lifetime ${lifetime}`);
      const before = await issuedCount();
      const err = await client.createCertificate(csrFor(spiffeId(me)).csr, 91 * 86400).catch((e) => e);
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.match(err.details, /above the maximum/);
      assert.equal(await issuedCount(), before);
    } finally {
      client.close();
    }
  });

  it('a CSR naming another identity is PERMISSION_DENIED and nothing is issued', async () => {
    const me = workload('prod', 'payments');
    const client = clientFor(f, credentialFor(f.ca, me));
    try {
      const before = await issuedCount();
      const err = await client.createCertificate(csrFor(spiffeId(workload('prod', 'admin'))).csr).catch((e) => e);
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /spiffe:\/\/cluster.local\/ns\/prod\/sa\/admin/);
      // Two URI SANs (its own and another) are refused too.
      const two = await client.createCertificate(csrFor([spiffeId(me), spiffeId(workload('prod', 'admin'))]).csr).catch((e) => e);
      assert.equal(two.code, status.PERMISSION_DENIED);
      assert.equal(await issuedCount(), before);
    } finally {
      client.close();
    }
  });

  it('strict CSR validation: DNS SAN, CommonName, bad signature are INVALID_ARGUMENT', async () => {
    const me = workload('prod', 'payments');
    const client = clientFor(f, credentialFor(f.ca, me));
    try {
      const before = await issuedCount();
      const dns = await client.createCertificate(csrFor(spiffeId(me), { dnsNames: ['evil.example.com'] }).csr).catch((e) => e);
      assert.equal(dns.code, status.INVALID_ARGUMENT);
      assert.match(dns.details, /dns-ip-email-san/);
      const cn = await client.createCertificate(csrFor(spiffeId(me), { commonName: 'admin' }).csr).catch((e) => e);
      assert.equal(cn.code, status.INVALID_ARGUMENT);
      const garbage = await client.createCertificate('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n').catch((e) => e);
      assert.equal(garbage.code, status.INVALID_ARGUMENT);
      assert.equal(await issuedCount(), before);
    } finally {
      client.close();
    }
  });

  it('no client certificate is UNAUTHENTICATED', async () => {
    const client = clientFor(f);
    try {
      const err = await client.createCertificate(csrFor(spiffeId(workload('prod', 'payments'))).csr).catch((e) => e);
      assert.equal(err.code, status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });

  it('a certificate from another root is UNAUTHENTICATED and nothing is issued', async () => {
    const other = CertificateAuthority.fromSecret(createSelfSignedRoot(DEFAULT_CA_CONFIG), DEFAULT_CA_CONFIG);
    const me = workload('prod', 'payments');
    const client = clientFor(f, credentialFor(other, me));
    try {
      const before = await issuedCount();
      const err = await client.createCertificate(csrFor(spiffeId(me)).csr).catch((e) => e);
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.equal(await issuedCount(), before);
    } finally {
      client.close();
    }
  });

  it('an expired client certificate is refused', async () => {
    const me = workload('prod', 'payments');
    const keyPair = csrFor(spiffeId(me));
    const spki = spkiDer(createPrivateKey(keyPair.keyPem));
    const expired = f.ca.issue(spki, spiffeId(me), 1000, new Date(Date.now() - 10_000)); // expired 9 s ago
    const client = clientFor(f, { keyPem: keyPair.keyPem, certChainPem: expired.certPem });
    try {
      assert.equal(await code(client.createCertificate(csrFor(spiffeId(me)).csr)), status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });

  it('IstioCAService/HandleCSR (Istio 1.0) signs for the caller', async () => {
    const me = workload('default', 'legacy');
    const client = clientFor(f, credentialFor(f.ca, me));
    try {
      const res = await client.handleCsr(csrFor(spiffeId(me)).csr, 60);
      assert.equal(res.isApproved, true);
      assert.equal(res.status?.code ?? 0, 0);
      assert.equal(res.certChain.length, 0); // self-signed root: no intermediates
      const leaf = parseCertificatePem(res.signedCert.toString());
      assert.equal(spiffeId(identityOfCertificate(leaf)), spiffeId(me));
    } finally {
      client.close();
    }
  });

  it('HandleCSR answers a refused CSR as Istio 1.0 did: is_approved false, status set, nothing issued; who calls stays a gRPC status', async () => {
    const me = workload('default', 'legacy');
    const client = clientFor(f, credentialFor(f.ca, me));
    const anon = clientFor(f);
    try {
      const before = await issuedCount();
      const denied = await client.handleCsr(csrFor(spiffeId(workload('default', 'other'))).csr);
      assert.equal(denied.isApproved, false);
      assert.equal(denied.status?.code, status.PERMISSION_DENIED);
      assert.match(denied.status?.message ?? '', /spiffe:\/\/cluster.local\/ns\/default\/sa\/other/);
      assert.equal(denied.signedCert.length, 0);
      const invalid = await client.handleCsr(csrFor(spiffeId(me), { dnsNames: ['evil.example.com'] }).csr);
      assert.equal(invalid.isApproved, false);
      assert.equal(invalid.status?.code, status.INVALID_ARGUMENT);
      assert.match(invalid.status?.message ?? '', /dns-ip-email-san/);
      const ttl = await client.handleCsr(csrFor(spiffeId(me)).csr, 91 * 24 * 60);
      assert.equal(ttl.isApproved, false);
      assert.equal(ttl.status?.code, status.INVALID_ARGUMENT);
      assert.equal(await issuedCount(), before);
      // No client certificate: the transport refuses the caller (UNAUTHENTICATED), as Istio 1.0 did.
      assert.equal(await code(anon.handleCsr(csrFor(spiffeId(me)).csr)), status.UNAUTHENTICATED);
      // CreateCertificate keeps gRPC status codes for the same refusal.
      assert.equal(await code(client.createCertificate(csrFor(spiffeId(workload('default', 'other'))).csr)), status.PERMISSION_DENIED);
    } finally {
      client.close();
      anon.close();
    }
  });

  it('a node obtains only identities placed on its host, and loses them when the task leaves', async () => {
    const client = clientFor(f, credentialFor(f.ca, node('agent-1.mesos')));
    const id = spiffeId(workload('shop', 'cart'));
    try {
      const before = await issuedCount();
      assert.equal(await code(client.createCertificate(csrFor(id).csr)), status.PERMISSION_DENIED, 'not placed anywhere');
      placeApp(f.view, '/shop/cart', 'shop', 'cart', ['agent-2.mesos']);
      assert.equal(await code(client.createCertificate(csrFor(id).csr)), status.PERMISSION_DENIED, 'placed on another host');
      assert.equal(await issuedCount(), before);
      placeApp(f.view, '/shop/cart', 'shop', 'cart', ['agent-2.mesos', 'agent-1.mesos']);
      const chain = await client.createCertificate(csrFor(id).csr);
      assert.equal(spiffeId(identityOfCertificate(parseCertificatePem(chain[0]))), id);
      placeApp(f.view, '/shop/cart', 'shop', 'cart', ['agent-2.mesos', 'agent-1.mesos'], 'TASK_KILLED');
      assert.equal(await code(client.createCertificate(csrFor(id).csr)), status.PERMISSION_DENIED, 'task killed');
      removeApp(f.view, '/shop/cart');
      assert.equal(await code(client.createCertificate(csrFor(id).csr)), status.PERMISSION_DENIED, 'app removed');
      // A node may renew itself, but not obtain another node's identity.
      const self = await client.createCertificate(csrFor(spiffeId(node('agent-1.mesos'))).csr);
      assert.equal(spiffeId(identityOfCertificate(parseCertificatePem(self[0]))), 'spiffe://cluster.local/mesos-agent/agent-1.mesos');
      assert.equal(await code(client.createCertificate(csrFor(spiffeId(node('agent-2.mesos'))).csr)), status.PERMISSION_DENIED);
    } finally {
      client.close();
    }
  });

  it('a workload cannot use the node-only secret feed', async () => {
    const client = clientFor(f, credentialFor(f.ca, workload('prod', 'payments')));
    try {
      const stream = client.watchSecrets();
      const err = await new Promise<{ code: number }>((resolve) => {
        stream.on('error', resolve);
        stream.on('data', () => undefined);
      });
      assert.equal(err.code, status.PERMISSION_DENIED);
    } finally {
      client.close();
    }
  });

  it('reports Citadel server metrics', async () => {
    const text = await f.registry.metrics();
    for (const name of ['citadel_server_csr_count', 'citadel_server_authentication_failure_count', 'citadel_server_csr_parsing_err_count', 'citadel_server_success_cert_issuance_count', 'citadel_server_csr_sign_err_count']) {
      assert.match(text, new RegExp(`^${name}`, 'm'));
    }
    assert.match(text, /citadel_server_csr_sign_err_count\{error="TTL_ERROR"\} 2/); // CreateCertificate and HandleCSR above
  });
});

describe('refusals are counted under Citadel\'s metric and label for them', () => {
  /** Every sample of every citadel_server_* counter, as `name{label="v"}` -> value. */
  async function counters(f: CaFixture): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const m of await f.registry.getMetricsAsJSON()) {
      if (!m.name.startsWith('citadel_server_') || String(m.type) !== 'counter') continue;
      for (const v of m.values) {
        const labels = Object.entries(v.labels).map(([k, x]) => `${k}="${x}"`).join(',');
        out.set(labels ? `${m.name}{${labels}}` : m.name, v.value);
      }
    }
    return out;
  }
  /** What changed in the counters while `run` ran. */
  async function counted(f: CaFixture, run: () => Promise<unknown>): Promise<Record<string, number>> {
    const before = await counters(f);
    await run();
    const after = await counters(f);
    const delta: Record<string, number> = {};
    for (const [k, v] of after) if (v !== (before.get(k) ?? 0)) delta[k] = v - (before.get(k) ?? 0);
    return delta;
  }

  it('a CSR that does not parse, one naming another identity, a TTL above the maximum, and a failure inside the CA', async (t) => {
    const f = await startCaFixture();
    const me = workload('prod', 'metrics');
    const client = clientFor(f, credentialFor(f.ca, me));
    t.after(async () => {
      client.close();
      await f.close();
    });
    const refused = async (p: Promise<unknown>, want: number) => assert.equal(await code(p), want);
    const bytes = Buffer.from(csrFor(spiffeId(me)).csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    bytes[bytes.length - 20] ^= 0xff; // a signature that no longer verifies
    const garbled = `-----BEGIN CERTIFICATE REQUEST-----\n${bytes.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;

    assert.deepEqual(await counted(f, () => refused(client.createCertificate('not a CSR'), status.INVALID_ARGUMENT)), {
      citadel_server_csr_count: 1, citadel_server_csr_parsing_err_count: 1,
    });
    assert.deepEqual(await counted(f, () => refused(client.createCertificate(garbled), status.INVALID_ARGUMENT)), {
      citadel_server_csr_count: 1, citadel_server_csr_parsing_err_count: 1,
    });
    assert.deepEqual(await counted(f, () => refused(client.createCertificate(csrFor(spiffeId(workload('prod', 'admin'))).csr), status.PERMISSION_DENIED)), {
      citadel_server_csr_count: 1, 'citadel_server_csr_sign_err_count{error="CSR_ERROR"}': 1,
    });
    assert.deepEqual(await counted(f, () => refused(client.createCertificate(csrFor(spiffeId(me)).csr, 91 * 86400), status.INVALID_ARGUMENT)), {
      citadel_server_csr_count: 1, 'citadel_server_csr_sign_err_count{error="TTL_ERROR"}': 1,
    });
    // an error the CA did not expect (its key unusable, say) is INTERNAL, counted as CERT_GEN_ERROR
    const sign = t.mock.method(f.ca, 'signCsr', () => {
      throw new Error('key unusable');
    });
    assert.deepEqual(await counted(f, () => refused(client.createCertificate(csrFor(spiffeId(me)).csr), status.INTERNAL)), {
      citadel_server_csr_count: 1, 'citadel_server_csr_sign_err_count{error="CERT_GEN_ERROR"}': 1,
    });
    sign.mock.restore();
    assert.deepEqual(await counted(f, () => client.createCertificate(csrFor(spiffeId(me)).csr)), {
      citadel_server_csr_count: 1, citadel_server_success_cert_issuance_count: 1,
    });
  });
});

describe('per-caller rate limiting', () => {
  it('a caller over its bucket gets RESOURCE_EXHAUSTED; another caller is unaffected', async () => {
    const f = await startCaFixture({ rateLimit: { ratePerSecond: 0.001, burst: 3 } });
    const a = workload('prod', 'a');
    const b = workload('prod', 'b');
    const ca = clientFor(f, credentialFor(f.ca, a));
    const cb = clientFor(f, credentialFor(f.ca, b));
    try {
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push(await code(ca.createCertificate(csrFor(spiffeId(a)).csr)));
      assert.deepEqual(codes, [0, 0, 0, status.RESOURCE_EXHAUSTED, status.RESOURCE_EXHAUSTED]);
      assert.equal(await code(cb.createCertificate(csrFor(spiffeId(b)).csr)), status.OK);
    } finally {
      ca.close();
      cb.close();
      await f.close();
    }
  });
});
