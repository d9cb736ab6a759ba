/**
 * The mesh act without Envoy, with proxyless gRPC (grpc-js-xds): /shop/catalog serves gRPC with
 * XdsServerCredentials, /web/storefront calls `xds:///catalog-shop.marathon.mesos:<port>` with
 * XdsChannelCredentials, each a process with its bootstrap from `citadel grpc-bootstrap` (xDS
 * over its host's node agent socket, certificates from the agent's files). STRICT with an
 * ISTIO_MUTUAL DestinationRule (a proxyless server has no sidecar for auto mTLS to find): the
 * xDS call passes over mTLS, a plaintext one is refused; PERMISSIVE, which for a gRPC server
 * means plaintext, with the DestinationRule removed: plaintext passes.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { CERTS_MOUNT_PATH, SDS_MOUNT_PATH } from '../../mesh/bootstrap/contract';
import { registerGrpcBootstrap } from '../commands/grpc-bootstrap';
import { resolveMounts } from './container-launch';
import type { CallResult } from './grpc-peer';
import { GrpcPeerProcess } from './grpc-peer-process';
import { applyPolicy, citadelOutput, deletePolicy, deployApp, freePort, istioMutual, meshPolicy, since, type MeshStage, type Placement } from './mesh-stage';
import { waitUntil } from './wait';

export async function grpcMeshAct(stage: MeshStage): Promise<void> {
  const { say, step } = stage;
  step('mesh: two services with proxyless gRPC (@grpc/grpc-js-xds), configured by citadel\'s xDS');
  const port = await freePort();
  const catalog = await deployApp(stage, {
    id: '/shop/catalog', cmd: 'node catalog.js', cpus: 0.1, mem: 32, labels: { 'istio.io/service-account': 'catalog' },
    networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS', portMappings: [{ containerPort: port, name: 'grpc' }] },
  });
  const storefront = await deployApp(stage, {
    id: '/web/storefront', cmd: 'node storefront.js', cpus: 0.1, mem: 32, labels: { 'istio.io/service-account': 'storefront' },
    networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS' },
  });
  const address = `${catalog.ip}:${port}`;
  const target = `xds:///catalog-shop.marathon.mesos:${port}`;
  say(`  /shop/catalog on ${catalog.host} serves on ${address}; /web/storefront on ${storefront.host} dials ${target}`);
  await applyPolicy(stage, 'strict.yaml', `${meshPolicy('STRICT')}---\n${istioMutual('catalog', 'shop', '/shop/catalog')}`);

  const t0 = Date.now();
  const server = GrpcPeerProcess.start('/shop/catalog', ['server', address], await bootstrapFor(stage, '/shop/catalog', 'shop', 'catalog', catalog));
  const client = GrpcPeerProcess.start('/web/storefront', ['client'], await bootstrapFor(stage, '/web/storefront', 'web', 'storefront', storefront));
  try {
    await server.event((e) => e.event === 'serving', 30_000);
    say(`  the catalog server is serving (its Listener, with mTLS, came over xDS) ${since(t0)} after start`);
    const storefrontId = `spiffe://${stage.trustDomain}/ns/web/sa/storefront`;
    const mtls = await waitUntil('the first xDS call to pass', async () => {
      const r = await client.call({ target });
      return r.ok && r;
    }, 15_000, 100);
    say(`  storefront -> catalog over ${target}: ${describeCall(mtls)}`);
    const plain = await client.call({ plaintext: address });
    say(`  plaintext straight to ${address}: ${describeCall(plain)}`);
    if (!mtls.ok || mtls.reply.caller !== storefrontId) throw new Error(`the xDS call did not reach the catalog as ${storefrontId}`);
    if (plain.ok) throw new Error('STRICT let a plaintext call through');

    step('mesh: PERMISSIVE (for a gRPC server: plaintext), and the DestinationRule removed');
    const flipped = Date.now();
    await applyPolicy(stage, 'permissive.yaml', meshPolicy('PERMISSIVE'));
    await deletePolicy(stage, { kind: 'DestinationRule', namespace: 'shop', name: 'catalog' });
    const open = await waitUntil('plaintext to the catalog to pass', async () => {
      const r = await client.call({ plaintext: address });
      return r.ok && r;
    }, 15_000, 100);
    say(`  plaintext straight to ${address}: ${describeCall(open)}, ${since(flipped)} after the apply, no restart`);
    const viaXds = await waitUntil('the xDS call to pass in plaintext', async () => {
      const r = await client.call({ target });
      return r.ok && r;
    }, 15_000, 100);
    say(`  storefront -> catalog over ${target}: ${describeCall(viaXds)}`);
  } finally {
    await Promise.all([server.stop(), client.stop()]);
  }
}

/** `citadel grpc-bootstrap` for the workload, its two mounts resolved to the host's node agent directories. */
async function bootstrapFor(stage: MeshStage, id: string, namespace: string, serviceAccount: string, p: Placement): Promise<string> {
  const sdsDir = stage.hosts.sdsDir(p.host, namespace, serviceAccount);
  const certsDir = stage.hosts.certsDir(p.host, namespace, serviceAccount);
  await waitUntil(`the node agent on ${p.host} to serve ${namespace}/${serviceAccount}`, () => existsSync(path.join(sdsDir, 'xds')) && existsSync(path.join(certsDir, 'cert-chain.pem')), 10_000);
  const args = ['grpc-bootstrap', '--service', id, '--service-account', serviceAccount, '--instance-ip', p.ip, '--instance-id', p.taskId, '--refresh-interval', '1s'];
  const bootstrap = await citadelOutput(registerGrpcBootstrap, args, path.join(stage.dir, `grpc-bootstrap-${serviceAccount}.json`));
  stage.say(`  $ citadel ${args.map((a) => (a === p.taskId ? '<task id>' : a)).join(' ')}`);
  stage.say(`    on ${p.host}; its ${SDS_MOUNT_PATH} and ${CERTS_MOUNT_PATH} are ${p.host}'s node agent directories`);
  return resolveMounts(bootstrap, [{ mountPath: SDS_MOUNT_PATH, hostPath: sdsDir }, { mountPath: CERTS_MOUNT_PATH, hostPath: certsDir }]);
}

function describeCall(r: CallResult): string {
  if (!r.ok) return `refused (${r.code === 14 ? 'UNAVAILABLE' : `code ${r.code}`}: ${r.error.replace(/\s*\(\d{4}-\d\d-\d\dT.*$/s, '')})`; // grpc-js appends when it failed and notes
  return r.reply.caller ? `OK, the server saw ${r.reply.caller}` : 'OK, plaintext (the server saw no client certificate)';
}
