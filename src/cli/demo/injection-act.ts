/**
 * The injection act: `citadel admission-proxy --convert-apps` in front of Marathon; a pod
 * (/billing/invoices, serving HTTP) and an app (/web/checkout, calling it; converted into a pod)
 * posted through it come back from Marathon with the istio-proxy sidecar; then, with Envoy, each
 * sidecar runs as the Mesos agent would start it (its command and environment from the stored
 * definition, its volume mount resolved to the host's node agent directory), and under STRICT
 * checkout calls invoices over mTLS while plaintext is refused.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { silentLogger } from '../../common/log';
import type { JsonObject } from '../../common/json';
import { AdmissionProxy } from '../../inject/admission-proxy';
import { injectConfig } from '../../inject/config';
import { IdentityDirectories } from '../../inject/identity-mounts';
import { NamespaceMap } from '../../inject/namespace-map';
import { DEFAULT_CERTS_DIR, DEFAULT_SDS_DIR } from '../../mesh/bootstrap/contract';
import { containerLaunchOf, type ContainerLaunch } from './container-launch';
import { ENVOY_INSTALL_COMMAND } from './envoy-binary';
import { EnvoySidecar } from './envoy-sidecar';
import { applyPolicy, describeAnswer, freePort, httpGet, meshPolicy, since, WhoAmIApp, type MeshStage } from './mesh-stage';
import { waitUntil } from './wait';

interface StoredPod {
  containers: Array<{ name: string }>;
  volumes?: Array<{ name: string; host?: string }>;
  labels?: Record<string, string>;
}

export async function injectionAct(stage: MeshStage, envoy: string | undefined): Promise<void> {
  const { say, step } = stage;
  step('injection: citadel admission-proxy in front of Marathon; definitions go in, come out with a sidecar');
  const port = await freePort();
  const upstream = await freePort();
  // two Envoys on one machine: each namespace's sidecars get their own admin port (the bootstrap's, 15000 by default)
  const adminPorts = { billing: await freePort(), web: await freePort() };
  const proxy = new AdmissionProxy({
    marathon: stage.marathonUrl,
    policy: {
      inject: injectConfig({ file: { defaults: {}, namespaces: { billing: { adminPort: adminPorts.billing }, web: { adminPort: adminPorts.web } } } }),
      convertApps: true,
      directories: new IdentityDirectories([DEFAULT_SDS_DIR, DEFAULT_CERTS_DIR]),
      namespaces: new NamespaceMap(),
    },
    logger: silentLogger,
  });
  const proxyUrl = await proxy.listen(0, '127.0.0.1');
  const sidecars: EnvoySidecar[] = [];
  let app: WhoAmIApp | undefined;
  try {
    say(`  $ citadel admission-proxy --marathon ${stage.marathonUrl} --listen ${proxyUrl.replace('http://', '')} --convert-apps --inject-config inject.json`);
    say(`    (inject.json: admin port ${adminPorts.billing} for namespace billing, ${adminPorts.web} for web, since both Envoys share this machine)`);
    const invoices = {
      id: '/billing/invoices', labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': 'invoices' },
      containers: [{ name: 'app', resources: { cpus: 0.1, mem: 32 }, exec: { command: { shell: 'node invoices.js' } }, endpoints: [{ name: 'http', containerPort: port }] }],
      networks: [{ mode: 'container', name: 'dcos' }],
    };
    const checkout = {
      id: '/web/checkout', cmd: 'node checkout.js', cpus: 0.1, mem: 32,
      labels: { 'sidecar.istio.io/inject': 'true', 'istio.io/service-account': 'checkout', 'citadel.io/upstreams': `/billing/invoices:${upstream}` },
      networks: [{ mode: 'container', name: 'dcos' }], container: { type: 'MESOS' },
    };
    for (const [what, url, body] of [['a pod', '/v2/pods', invoices], ['an app', '/v2/apps', checkout]] as const) {
      const res = await fetch(proxyUrl + url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const answer = await res.text();
      if (res.status !== 201) throw new Error(`the admission proxy answered ${res.status} to POST ${url} ${body.id}: ${answer.slice(0, 300)}`);
      const stored = (await (await fetch(`${stage.marathonUrl}/v2/pods${body.id}`)).json()) as StoredPod;
      const volume = stored.volumes?.find((v) => v.name === 'citadel-identity');
      say(`  POST ${url} ${body.id} (${what}) through the proxy: ${res.status}; Marathon has the pod ${body.id} with containers ${stored.containers.map((c) => c.name).join(', ')}` +
        `${stored.labels?.['citadel.io/converted-from-app'] ? ' (converted from the app)' : ''}, volume ${volume?.host ?? '(none)'}`);
    }
    if (!envoy) {
      say(`  running the sidecars needs Envoy; to get one: ${ENVOY_INSTALL_COMMAND}`);
      return;
    }

    step('injection: the stored definitions run, each sidecar as its Mesos agent would start it');
    await applyPolicy(stage, 'strict.yaml', meshPolicy('STRICT'));
    app = await WhoAmIApp.listen(port);
    const t0 = Date.now();
    const launches: ContainerLaunch[] = [];
    for (const [id, adminPort] of [['/billing/invoices', adminPorts.billing], ['/web/checkout', adminPorts.web]] as const) {
      const status = (await (await fetch(`${stage.marathonUrl}/v2/pods${id}::status`)).json()) as JsonObject;
      const launch = containerLaunchOf(status, 'istio-proxy', (host, p) => stage.hosts.local(host, p));
      launches.push(launch);
      const identity = `${launch.env.CITADEL_NAMESPACE}/${launch.env.CITADEL_SERVICE_ACCOUNT}`;
      const identityDir = launch.mounts[0].hostPath;
      await waitUntil(`the node agent on ${launch.agentHostname} to serve ${identity}`, () => ['socket', 'xds'].every((f) => existsSync(path.join(identityDir, f))), 10_000);
      say(`  ${id} on ${launch.agentHostname}: sh -c <its command>, MESOS_CONTAINER_IP=${launch.env.MESOS_CONTAINER_IP}, MESOS_TASK_ID=${launch.env.MESOS_TASK_ID}`);
      sidecars.push(await EnvoySidecar.start({ name: id, envoy, command: { shell: launch.shell }, env: launch.env, adminPort, workDir: path.join(stage.dir, `sidecar-${launch.env.CITADEL_SERVICE_ACCOUNT}`) }));
    }
    const invoicesIp = launches[0].containerIp;
    await sidecars[0].waitForListener(`inbound|${invoicesIp}|${port}`);
    await sidecars[1].waitForListener(`outbound|127.0.0.1|${upstream}`);
    say(`  both sidecars LIVE in ${since(t0)}`);
    const mtls = await httpGet('127.0.0.1', upstream);
    say(`  checkout -> invoices through the sidecars (auto mTLS: invoices has a sidecar): ${describeAnswer(mtls)}`);
    const plain = await httpGet(invoicesIp, port);
    say(`  plaintext straight to ${invoicesIp}:${port}: ${describeAnswer(plain)}`);
    const checkoutId = `spiffe://${stage.trustDomain}/ns/web/sa/checkout`;
    if ('error' in mtls || mtls.caller !== checkoutId) throw new Error(`the mTLS call did not reach the invoices app as ${checkoutId}`);
    if (!('error' in plain)) throw new Error('STRICT let a plaintext call through');
  } finally {
    await Promise.all(sidecars.map((s) => s.stop()));
    await app?.close();
    await proxy.close();
  }
}

