/**
 * The mesh act with Envoy: /shop/catalog (an HTTP app) and /web/storefront (which calls it
 * through `citadel.io/upstreams`) on the container network, each with an Envoy sidecar from
 * `citadel envoy-bootstrap` in SDS mode on the host Marathon placed it on; then STRICT (an mTLS
 * call passes, plaintext is refused) and PERMISSIVE (plaintext passes too), with no restarts.
 */
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_SDS_DIR, identityDirectory, SDS_MOUNT_PATH } from '../../mesh/bootstrap/contract';
import { registerEnvoyBootstrap } from '../commands/envoy-bootstrap';
import { resolveMounts } from './container-launch';
import { EnvoySidecar } from './envoy-sidecar';
import { applyPolicy, citadelOutput, deployApp, describeAnswer, freePort, httpGet, istioMutual, meshPolicy, since, WhoAmIApp, type MeshStage, type Placement } from './mesh-stage';
import { waitUntil } from './wait';

interface Workload {
  id: string;
  namespace: string;
  serviceAccount: string;
  placement: Placement;
  adminPort: number;
}

export async function envoyMeshAct(stage: MeshStage, envoy: string): Promise<void> {
  const { say, step } = stage;
  step(`mesh: two services with Envoy sidecars (${envoy})`);
  const port = await freePort();
  const upstream = await freePort();
  const catalog = await deployApp(stage, {
    id: '/shop/catalog', cmd: 'node catalog.js', cpus: 0.1, mem: 32, labels: { 'istio.io/service-account': 'catalog' },
    networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS', portMappings: [{ containerPort: port, name: 'http' }] },
  });
  const storefront = await deployApp(stage, {
    id: '/web/storefront', cmd: 'node storefront.js', cpus: 0.1, mem: 32, labels: { 'istio.io/service-account': 'storefront', 'citadel.io/upstreams': `/shop/catalog:${upstream}` },
    networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS' },
  });
  say(`  /shop/catalog on ${catalog.host} at ${catalog.ip}:${port} (its app on 127.0.0.1:${port}); /web/storefront on ${storefront.host}, calling it on 127.0.0.1:${upstream} (citadel.io/upstreams)`);

  const app = await WhoAmIApp.listen(port);
  const sidecars: EnvoySidecar[] = [];
  try {
    const workloads: Workload[] = [
      { id: '/shop/catalog', namespace: 'shop', serviceAccount: 'catalog', placement: catalog, adminPort: await freePort() },
      { id: '/web/storefront', namespace: 'web', serviceAccount: 'storefront', placement: storefront, adminPort: await freePort() },
    ];
    const t0 = Date.now();
    for (const w of workloads) sidecars.push(await startSidecar(stage, envoy, w));
    const [catalogEnvoy, storefrontEnvoy] = sidecars;
    await catalogEnvoy.waitForListener(`inbound|${catalog.ip}|${port}`);
    await storefrontEnvoy.waitForListener(`outbound|127.0.0.1|${upstream}`);
    say(`  both sidecars LIVE in ${since(t0)}: certificates over SDS and listeners over xDS, through each host's node agent`);
    say(`  no policy yet (Istio's default, PERMISSIVE): plaintext straight to ${catalog.ip}:${port}: ${describeAnswer(await httpGet(catalog.ip, port))}`);

    step('mesh: STRICT');
    const strictAt = Date.now();
    await applyPolicy(stage, 'strict.yaml', `${meshPolicy('STRICT')}---\n${istioMutual('catalog', 'shop', '/shop/catalog')}`);
    const storefrontId = `spiffe://${stage.trustDomain}/ns/web/sa/storefront`;
    // both sidecars change: catalog's listener (STRICT) and storefront's cluster (ISTIO_MUTUAL)
    const mtls = await waitUntil('STRICT in both sidecars', async () => {
      const [a, plain] = await Promise.all([httpGet('127.0.0.1', upstream), httpGet(catalog.ip, port)]);
      return 'error' in plain && !('error' in a) && a.caller === storefrontId && a;
    }, 10_000, 25).catch(() => undefined);
    say(mtls ? `  both sidecars took it ${since(strictAt)} after the apply, no restart (Envoy pids ${catalogEnvoy.pid} and ${storefrontEnvoy.pid} still)` : '  10 s after the apply, the sidecars still do not both enforce it');
    const call = mtls ?? (await httpGet('127.0.0.1', upstream));
    say(`  storefront -> catalog through the sidecars (mTLS): ${describeAnswer(call)}`);
    const plain = await httpGet(catalog.ip, port);
    say(`  plaintext straight to ${catalog.ip}:${port}: ${describeAnswer(plain)}`);
    if ('error' in call || call.status !== 200 || call.caller !== storefrontId) throw new Error(`the mTLS call did not reach the catalog app as ${storefrontId}`);
    if (!('error' in plain)) throw new Error('STRICT let a plaintext call through');

    step('mesh: PERMISSIVE');
    const permissiveAt = Date.now();
    await applyPolicy(stage, 'permissive.yaml', meshPolicy('PERMISSIVE'));
    const open = await waitUntil('plaintext to the catalog sidecar to pass', async () => {
      const a = await httpGet(catalog.ip, port);
      return !('error' in a) && a.status === 200 && a;
    }, 10_000, 25);
    say(`  plaintext straight to ${catalog.ip}:${port}: ${describeAnswer(open)}, ${since(permissiveAt)} after the apply`);
    const still = await httpGet('127.0.0.1', upstream);
    say(`  storefront -> catalog (mTLS, its DestinationRule says ISTIO_MUTUAL): ${describeAnswer(still)}`);
    if ('error' in still || still.caller !== storefrontId) throw new Error('PERMISSIVE broke the mTLS call');
  } finally {
    await Promise.all(sidecars.map((s) => s.stop()));
    await app.close();
  }
}

/** `citadel envoy-bootstrap` for the workload, its SDS mount resolved to the host's node agent directory, run with Envoy. */
async function startSidecar(stage: MeshStage, envoy: string, w: Workload): Promise<EnvoySidecar> {
  const { host, ip, taskId } = w.placement;
  const sdsDir = stage.hosts.sdsDir(host, w.namespace, w.serviceAccount);
  await waitUntil(`the node agent on ${host} to serve ${w.namespace}/${w.serviceAccount}`, () => ['socket', 'xds'].every((f) => existsSync(path.join(sdsDir, f))), 10_000);
  const args = ['envoy-bootstrap', '--service', w.id, '--service-account', w.serviceAccount, '--instance-ip', ip, '--instance-id', taskId, '--admin-port', String(w.adminPort)];
  const yaml = await citadelOutput(registerEnvoyBootstrap, args, path.join(stage.dir, `bootstrap-${w.serviceAccount}.yaml`));
  const file = path.join(stage.dir, `envoy-${w.serviceAccount}.yaml`);
  writeFileSync(file, resolveMounts(yaml, [{ mountPath: SDS_MOUNT_PATH, hostPath: sdsDir }]));
  stage.say(`  $ citadel ${args.map((a) => (a === taskId ? '<task id>' : a)).join(' ')}`);
  stage.say(`    on ${host}; its ${SDS_MOUNT_PATH} is ${host}'s ${identityDirectory(DEFAULT_SDS_DIR, w.namespace, w.serviceAccount)}`);
  return EnvoySidecar.start({ name: w.id, envoy, command: { args: ['-c', file, '--disable-hot-restart', '--concurrency', '1', '-l', 'warning'] }, adminPort: w.adminPort, workDir: path.join(stage.dir, `envoy-${w.serviceAccount}`) });
}
