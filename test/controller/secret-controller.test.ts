import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../src/ca/authority';
import { DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { createLogger } from '../../src/common/log';
import { SecretController } from '../../src/controller/secret-controller';
import { parseCertificateDer } from '../../src/pki/certificate';
import { FileStore } from '../../src/store/file-store';
import { checkBundle } from '../../src/pki/bundle';
import { tempDir } from '../helpers/pki';
import { waitFor } from '../helpers/wait';

/** A Marathon view stand-in for unit-level controller tests: just the account map. */
class Accounts {
  private map = new Map<string, Set<string>>();
  private listeners = new Set<() => void>();
  set(ns: string, ...sas: string[]) {
    this.map.set(ns, new Set(['default', ...sas]));
    this.listeners.forEach((l) => l());
  }
  remove(ns: string) {
    this.map.delete(ns);
    this.listeners.forEach((l) => l());
  }
  desiredAccounts() {
    return new Map([...this.map].map(([k, v]) => [k, new Set(v)]));
  }
  onChange(l: () => void) {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

async function setup(opts: { ttlMs?: number; ratio?: number; deleteDelayMs?: number; resyncIntervalMs?: number; now?: () => Date } = {}) {
  const dir = tempDir();
  const store = await FileStore.open(dir);
  const config = { ...DEFAULT_CA_CONFIG, workloadCertTtlMs: opts.ttlMs ?? DEFAULT_CA_CONFIG.workloadCertTtlMs, clockSkewMs: 0 };
  const ca = await CertificateAuthority.open(store, config);
  const accounts = new Accounts();
  const registry = new Registry();
  const controller = new SecretController({
    ca,
    store,
    accounts,
    rotation: { gracePeriodRatio: opts.ratio ?? 0.5, minGracePeriodMs: 0 },
    deleteDelayMs: opts.deleteDelayMs ?? 60_000,
    resyncIntervalMs: opts.resyncIntervalMs ?? 60_000,
    registry,
    now: opts.now,
  });
  return { dir, store, ca, accounts, controller, registry };
}

const metric = async (r: Registry, name: string) => (await r.getSingleMetricAsString(name)).split('\n').find((l) => l.startsWith(name))?.split(' ')[1];

test('creates istio.default and one secret per named account, with Citadel metrics', async (t) => {
  const { store, accounts, controller, registry } = await setup();
  t.after(() => controller.stop());
  accounts.set('prod', 'payments', 'frontend');
  accounts.set('tools');
  const r = await controller.start();
  assert.equal(r.created, 4);
  const names = (await store.listSecrets()).map((s) => `${s.namespace}/${s.name}`);
  assert.deepEqual(names, ['prod/istio.default', 'prod/istio.frontend', 'prod/istio.payments', 'tools/istio.default']);
  for (const s of await store.listSecrets()) {
    assert.deepEqual(checkBundle(s).problems, []);
    assert.equal(s.metadata.type, 'istio.io/key-and-cert');
  }
  assert.equal(await metric(registry, 'citadel_secret_controller_svc_acc_created_cert_count'), '4');
});

test('a change in Marathon creates the new secret without waiting for a resync', async (t) => {
  const { store, accounts, controller } = await setup();
  t.after(() => controller.stop());
  await controller.start();
  const pass = controller.nextPass();
  accounts.set('shop', 'checkout');
  await pass;
  assert.ok(await store.getSecret('shop', 'istio.checkout'));
});

test('a secret deleted behind the controller\'s back is recreated', async (t) => {
  const { store, accounts, controller, registry } = await setup({ resyncIntervalMs: 200 });
  t.after(() => controller.stop());
  accounts.set('prod', 'api');
  await controller.start();
  const before = await store.getSecret('prod', 'istio.api');
  // Another process deletes it: this store instance sees no event; the resync finds it.
  const other = await FileStore.open((store as FileStore).dir);
  await other.deleteSecret('prod', 'istio.api');
  const after = await waitFor('the secret recreated', () => store.getSecret('prod', 'istio.api'));
  assert.notEqual(after!.metadata.serialNumber, before!.metadata.serialNumber);
  assert.equal(await metric(registry, 'citadel_secret_controller_secret_deleted_cert_count'), '1');
});

test('secrets of a gone account are deleted only after the delay; a quick redeploy keeps them (fast clock)', async (t) => {
  let clock = Date.now(); // the CA's root was made on the real clock
  const { store, accounts, controller, registry } = await setup({ deleteDelayMs: 600, now: () => new Date(clock) });
  t.after(() => controller.stop());
  const passAt = async (advanceMs: number) => {
    clock += advanceMs;
    await controller.reconcile();
  };
  accounts.set('prod', 'api');
  await controller.start();
  const serial = (await store.getSecret('prod', 'istio.api'))!.metadata.serialNumber;
  accounts.set('prod'); // api gone
  await passAt(0);
  await passAt(500);
  assert.ok(await store.getSecret('prod', 'istio.api'), 'still there within the delay');
  accounts.set('prod', 'api'); // redeployed: no churn
  await passAt(200);
  await passAt(800);
  assert.equal((await store.getSecret('prod', 'istio.api'))!.metadata.serialNumber, serial);
  accounts.remove('prod');
  await passAt(0);
  await passAt(599);
  assert.ok(await store.getSecret('prod', 'istio.default'), 'kept until the delay has passed');
  await passAt(1);
  assert.equal(await store.getSecret('prod', 'istio.api'), undefined);
  assert.equal(await store.getSecret('prod', 'istio.default'), undefined);
  assert.equal(await metric(registry, 'citadel_secret_controller_svc_acc_deleted_cert_count'), '2');
});

test('a secret whose certificate does not parse, or carries another root, is refreshed', async (t) => {
  const { store, accounts, controller, registry } = await setup();
  t.after(() => controller.stop());
  accounts.set('prod', 'api', 'web');
  await controller.start();
  const api = (await store.getSecret('prod', 'istio.api'))!;
  const web = (await store.getSecret('prod', 'istio.web'))!;
  await store.putSecret({ ...api, certChainPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }, api.version);
  await store.putSecret({ ...web, rootCertPem: web.certChainPem }, web.version);
  // Restart the controller: it reads the store afresh and finds both.
  await controller.stop();
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ write: (l) => lines.push(JSON.parse(l)) });
  const second = new SecretController({ ca: (controller as any).opts.ca, store, accounts, rotation: { gracePeriodRatio: 0.5, minGracePeriodMs: 0 }, registry: new Registry(), logger });
  t.after(() => second.stop());
  const r = await second.start();
  assert.equal(r.refreshed, 2);
  // the warning says which secret and why: the DER reader's own words
  const why = (() => {
    try {
      parseCertificateDer(Buffer.from('AAAA', 'base64'));
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail('"AAAA" parsed as a certificate');
  })();
  const unparsed = lines.filter((l) => l.msg === 'the certificate of a stored secret does not parse; it will be refreshed');
  assert.deepEqual(unparsed.map((l) => ({ level: l.level, namespace: l.namespace, secret: l.secret, error: l.error })), [{ level: 'warn', namespace: 'prod', secret: 'istio.api', error: why }]);
  assert.ok(why.length > 0 && !why.includes('\n'), why);
  for (const name of ['istio.api', 'istio.web']) {
    const s = (await store.getSecret('prod', name))!;
    assert.deepEqual(checkBundle(s).problems, [], name);
  }
  void registry;
});

test('short TTLs rotate on time, and no faster, over a simulated minute (fast clock)', async (t) => {
  let clock = Date.now(); // the CA's root was made on the real clock
  const now = () => new Date(clock);
  const { store, accounts, controller } = await setup({ ttlMs: 4000, ratio: 0.5, now });
  t.after(() => controller.stop());
  accounts.set('prod', 'api');
  await controller.start();
  const serials = new Set<string>();
  for (let step = 0; step < 600; step++) {
    clock += 100;
    await controller.reconcile();
    for (const s of await store.listSecrets()) {
      assert.deepEqual(checkBundle(s, { now: now() }).problems, [], `${s.name} at ${step}`);
      const left = Date.parse(s.metadata.notAfter) - clock;
      assert.ok(left >= 1900, `${s.name} has ${left} ms left: rotation is late`);
      if (s.name === 'istio.api') serials.add(s.metadata.serialNumber);
    }
  }
  // 4 s lifetime, refreshed at 2 s: 30 generations in 60 s after the first.
  assert.ok(serials.size >= 30 && serials.size <= 32, `saw ${serials.size} generations in a simulated minute`);
});

test('a grace period longer than the lifetime is held by the re-issue floor, and counted', async (t) => {
  let clock = Date.now(); // the CA's root was made on the real clock
  const { store, accounts, controller, registry } = await setup({ ttlMs: 4000, ratio: 1, now: () => new Date(clock) });
  t.after(() => controller.stop());
  accounts.set('prod');
  await controller.start();
  const versions: number[] = [];
  for (let step = 0; step < 100; step++) {
    clock += 100;
    await controller.reconcile();
    versions.push((await store.getSecret('prod', 'istio.default'))!.version);
  }
  // Ratio 1 makes every certificate due at once; the floor (1 s for a 4 s lifetime) allows a re-issue a second.
  const rotations = new Set(versions).size;
  assert.ok(rotations >= 9 && rotations <= 11, `${rotations} versions in 10 simulated seconds`);
  assert.ok(Number(await metric(registry, 'citadel_secret_controller_reissue_held_count')) > 50);
});
