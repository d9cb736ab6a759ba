/** The hand-written codecs in src/api/ca-api.ts against the .proto files, as protobufjs reads them. */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import { codec } from '../../src/api/ca-api';
import { ProtoDecodeError } from '../../src/api/wire';
import { PROTO_DIR } from '../../src/api/protos';

const GOOGLEAPIS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps', 'googleapis');

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of [PROTO_DIR, GOOGLEAPIS, path.join(path.dirname(require.resolve('protobufjs/package.json')))]) {
      const p = path.join(dir, target);
      try {
        require('node:fs').accessSync(p);
        return p;
      } catch {
        /* next */
      }
    }
    return target;
  };
  root.loadSync(['istio/v1/auth/istioca.proto', 'istio/v1/auth/ca_service.proto', 'citadel/v1/node.proto'], { keepCase: false });
  return root;
}

describe('gRPC wire contract', () => {
  const root = loadRoot();
  const T = (n: string) => root.lookupType(n);

  it('the .proto files load with @grpc/proto-loader and name the services and fields of ISTIO-FACTS.md', () => {
    const def = protoLoader.loadSync(['istio/v1/auth/istioca.proto', 'istio/v1/auth/ca_service.proto', 'citadel/v1/node.proto'], { includeDirs: [PROTO_DIR, GOOGLEAPIS] });
    assert.ok(def['istio.v1.auth.IstioCertificateService']);
    assert.ok(def['istio.v1.auth.IstioCAService']);
    assert.ok(def['citadel.v1.NodeService']);
    const fields = (name: string) => Object.fromEntries(Object.values(T(name).fields).map((f) => [f.name, f.id]));
    assert.deepEqual(fields('istio.v1.auth.IstioCertificateRequest'), { csr: 1, subjectId: 2, validityDuration: 3, metadata: 4 });
    assert.deepEqual(fields('istio.v1.auth.IstioCertificateResponse'), { certChain: 1 });
    assert.deepEqual(fields('istio.v1.auth.CsrRequest'), { csrPem: 1, nodeAgentCredential: 2, credentialType: 3, requestedTtlMinutes: 4 });
    assert.deepEqual(fields('istio.v1.auth.CsrResponse'), { isApproved: 1, status: 2, signedCert: 3, certChain: 4 });
  });

  it('IstioCertificateRequest: protobufjs -> ours, including metadata (skipped) and a negative TTL', () => {
    const Req = T('istio.v1.auth.IstioCertificateRequest');
    const bytes = Buffer.from(Req.encode(Req.fromObject({ csr: 'CSR-PEM', subjectId: 'x', validityDuration: -1, metadata: { fields: { ClusterID: { stringValue: 'c1' } } } })).finish());
    assert.deepEqual(codec.IstioCertificateRequest.decode(bytes), { csr: 'CSR-PEM', subjectId: 'x', validityDuration: -1 });
    const big = Buffer.from(Req.encode(Req.fromObject({ csr: 'a', validityDuration: 90 * 86400 })).finish());
    assert.equal(codec.IstioCertificateRequest.decode(big).validityDuration, 90 * 86400);
    const back = Req.toObject(Req.decode(codec.IstioCertificateRequest.encode({ csr: 'c', subjectId: '', validityDuration: 3600 })), { longs: Number });
    assert.deepEqual(back, { csr: 'c', validityDuration: 3600 });
  });

  it('IstioCertificateResponse: ours -> protobufjs, order kept', () => {
    const Res = T('istio.v1.auth.IstioCertificateResponse');
    const obj = Res.toObject(Res.decode(codec.IstioCertificateResponse.encode({ certChain: ['leaf', 'inter', 'root'] })));
    assert.deepEqual(obj, { certChain: ['leaf', 'inter', 'root'] });
  });

  it('CsrRequest and CsrResponse (Istio 1.0), both directions', () => {
    const Req = T('istio.v1.auth.CsrRequest');
    const reqBytes = Buffer.from(Req.encode(Req.fromObject({ csrPem: Buffer.from('pem'), credentialType: 'onprem', requestedTtlMinutes: -3 })).finish());
    const req = codec.CsrRequest.decode(reqBytes);
    assert.equal(req.csrPem.toString(), 'pem');
    assert.equal(req.credentialType, 'onprem');
    assert.equal(req.requestedTtlMinutes, -3);
    const Res = T('istio.v1.auth.CsrResponse');
    const res = Res.toObject(Res.decode(codec.CsrResponse.encode({ isApproved: true, status: { code: 0, message: 'ok' }, signedCert: Buffer.from('leaf'), certChain: Buffer.from('chain') })));
    assert.equal(res.isApproved, true);
    assert.equal(res.status.message, 'ok');
    assert.equal(Buffer.from(res.signedCert).toString(), 'leaf');
    assert.equal(Buffer.from(res.certChain).toString(), 'chain');
    const theirs = Buffer.from(Res.encode(Res.fromObject({ isApproved: false, status: { code: 7, message: 'denied' } })).finish());
    assert.deepEqual(codec.CsrResponse.decode(theirs).status, { code: 7, message: 'denied' });
  });

  it('citadel.v1 messages, both directions', () => {
    const Up = T('citadel.v1.SecretsUpdate');
    const update = { snapshot: true, secrets: [{ namespace: 'ns', serviceAccount: 'sa', certChain: 'c', key: 'k', rootCert: 'r', version: 'v1' }], removed: [{ namespace: 'old', serviceAccount: 'gone' }], more: true };
    assert.deepEqual(Up.toObject(Up.decode(codec.SecretsUpdate.encode(update))), update);
    assert.deepEqual(codec.SecretsUpdate.decode(Buffer.from(Up.encode(Up.fromObject(update)).finish())), update);
    const At = T('citadel.v1.AttestNodeRequest');
    const at = { joinToken: 't', host: 'h', csr: 'c', validityDuration: 86400 };
    assert.deepEqual(codec.AttestNodeRequest.decode(Buffer.from(At.encode(At.fromObject(at)).finish())), at);
    assert.deepEqual(At.toObject(At.decode(codec.AttestNodeRequest.encode(at)), { longs: Number }), at);
    const Pl = T('citadel.v1.PlacementsUpdate');
    const placements = { snapshot: true, placed: [{ namespace: 'prod', serviceAccount: 'api' }, { namespace: 'prod', serviceAccount: 'web' }], removed: [{ namespace: 'old', serviceAccount: 'gone' }] };
    assert.deepEqual(Pl.toObject(Pl.decode(codec.PlacementsUpdate.encode(placements))), placements);
    assert.deepEqual(codec.PlacementsUpdate.decode(Buffer.from(Pl.encode(Pl.fromObject(placements)).finish())), placements);
    assert.deepEqual(Object.keys(root.lookupService('citadel.v1.NodeService').methods).sort(), ['AttestNode', 'WatchPlacements', 'WatchSecrets']);
  });

  it('truncated input is an error, not a silent empty message', () => {
    const good = codec.IstioCertificateRequest.encode({ csr: 'x'.repeat(300), subjectId: '', validityDuration: 5 });
    assert.throws(() => codec.IstioCertificateRequest.decode(good.subarray(0, 100)), ProtoDecodeError);
  });
});
