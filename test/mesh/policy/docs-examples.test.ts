import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { parsePolicySources, resolveDestinationTls, resolvePeerMtls, type PolicyDocument } from '../../../src/mesh/policy';

const DOC = path.resolve(__dirname, '../../../../docs/policy.md');

/** Every ```yaml block of docs/policy.md, as one source each. */
function examples(): { file: string; text: string }[] {
  const text = fs.readFileSync(DOC, 'utf8');
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m, i) => ({ file: `docs/policy.md example ${i + 1}`, text: m[1] }));
}

describe('docs/policy.md examples', () => {
  it('parse, together, without errors or warnings', () => {
    const sources = examples();
    assert.equal(sources.length, 4);
    const { documents, warnings } = parsePolicySources(sources);
    assert.equal(documents.length, 9);
    assert.deepEqual(warnings, []);
  });

  it('resolve as the text says', () => {
    const all = parsePolicySources(examples()).documents;
    // The worked example: mesh STRICT, prod PERMISSIVE, api-health.
    const worked: PolicyDocument[] = all.filter(
      (d) => (d.kind === 'PeerAuthentication' && ['istio-system/default', 'prod/api-health'].includes(`${d.metadata.namespace}/${d.metadata.name}`)) || (d.kind === 'Policy' && d.metadata.name === 'default'),
    );
    assert.equal(worked.length, 3);
    const api = { namespace: 'prod', labels: { app: 'api' }, serviceNames: ['/prod/payments/api', 'api-payments-prod.marathon.mesos'] };
    assert.equal(resolvePeerMtls(worked, api, 8081), 'DISABLE');
    assert.equal(resolvePeerMtls(worked, api, 8080), 'PERMISSIVE');
    assert.equal(resolvePeerMtls(worked, { namespace: 'web', labels: { app: 'api' }, serviceNames: ['/web/site'] }, 8081), 'STRICT');

    const exporter = { host: 'exporter-monitoring-prod.marathon.mesos', aliases: ['/prod/monitoring/exporter'], clientNamespace: 'web' };
    assert.equal(resolveDestinationTls(all, { ...exporter, port: 9100 })?.mode, 'DISABLE');
    assert.equal(resolveDestinationTls(all, { ...exporter, port: 8080 })?.rule.name, 'exporter');
    assert.equal(resolveDestinationTls(all, { host: 'api-payments-prod.marathon.mesos', port: 8080, clientNamespace: 'web' })?.rule.name, 'mesh-mtls');
    assert.equal(resolveDestinationTls(all, { host: 'db.billing.example.com', port: 5432, clientNamespace: 'prod' })?.mode, 'MUTUAL');
  });
});

describe('docs/mesh.md policy example', () => {
  it('parses without errors or warnings and sends Istio mTLS to the proxyless gRPC server', () => {
    const text = fs.readFileSync(path.resolve(__dirname, '../../../../docs/mesh.md'), 'utf8');
    const sources = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m, i) => ({ file: `docs/mesh.md example ${i + 1}`, text: m[1].replace(/^ {2}/gm, '') }));
    assert.equal(sources.length, 1);
    const { documents, warnings } = parsePolicySources(sources);
    assert.deepEqual(warnings, []);
    assert.deepEqual(documents.map((d) => d.kind), ['DestinationRule']);
    assert.equal(resolveDestinationTls(documents, { host: 'ledger-prod.marathon.mesos', aliases: ['/prod/ledger'], port: 7070, clientNamespace: 'web' })?.mode, 'ISTIO_MUTUAL');
  });
});
