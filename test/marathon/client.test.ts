import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/common/log';
import { MarathonClient, type MarathonClientOptions } from '../../src/marathon/client';
import { MarathonSimulator } from '../../src/marathon/simulator';
import { waitFor } from '../helpers/wait';

const fast = { initialMs: 20, maxMs: 100 };


function accounts(client: MarathonClient): Record<string, string[]> {
  return Object.fromEntries([...client.view.desiredAccounts()].map(([ns, sas]) => [ns, [...sas].sort()]).sort());
}

async function withClient(opts: Partial<MarathonClientOptions> & { urls: string[] }, fn: (c: MarathonClient, log: string[]) => Promise<void>): Promise<void> {
  const log: string[] = [];
  const client = new MarathonClient({ backoff: fast, logger: createLogger({ write: (l) => log.push(l), level: 'debug' }), ...opts });
  try {
    await fn(client, log);
  } finally {
    await client.stop();
  }
}

describe('MarathonClient against the simulator', () => {
  it('lists apps and pods, then follows events: create, scale, relabel, delete', async () => {
    const sim = new MarathonSimulator({ agents: ['h1', 'h2'] });
    const url = await sim.listen(0);
    sim.state.createApp({ id: '/prod/api', cmd: 'x', instances: 2, labels: { 'istio.io/service-account': 'payments' } });
    sim.state.createPod({ id: '/prod/worker', labels: { 'istio.io/service-account': 'worker' }, containers: [{ name: 'c', resources: { cpus: 0.1, mem: 32 } }] });
    sim.state.createApp({ id: '/solo', cmd: 'x', instances: 0 });
    try {
      await withClient({ urls: [url] }, async (client) => {
        await client.start();
        assert.equal(client.connected, true);
        assert.deepEqual(accounts(client), { default: ['default'], prod: ['default', 'payments', 'worker'] });
        assert.deepEqual(client.view.identitiesOnHost('h1').map((i) => i.serviceAccount).sort(), ['payments', 'worker']);
        assert.deepEqual([...client.view.hostsOf({ namespace: 'prod', serviceAccount: 'payments' })].sort(), ['h1', 'h2']);
        const pod = client.view.workloads().find((w) => w.id === '/prod/worker')!;
        assert.equal(pod.kind, 'pod');
        assert.match(pod.instances[0].id, /^prod_worker\.instance-/);

        let notified = 0;
        client.view.onChange(() => notified++);
        await fetch(`${url}/v2/apps`, { method: 'POST', body: JSON.stringify({ id: '/dev/web', cmd: 'x', labels: { 'istio.io/service-account': 'web' } }) });
        await waitFor('/dev/web in the view', () => accounts(client).dev?.includes('web'));
        assert.ok(notified > 0);

        await fetch(`${url}/v2/apps/prod/api`, { method: 'PUT', body: JSON.stringify({ instances: 0 }) });
        await waitFor('payments scaled to 0', () => client.view.hostsOf({ namespace: 'prod', serviceAccount: 'payments' }).size === 0);
        assert.deepEqual(accounts(client).prod, ['default', 'payments', 'worker']); // the account stays while the app exists

        await fetch(`${url}/v2/apps/dev/web`, { method: 'PUT', body: JSON.stringify({ labels: { 'istio.io/service-account': 'Web_Bad' } }) });
        await waitFor('/dev/web invalid', () => client.view.invalid().some((w) => w.id === '/dev/web'));
        assert.match(client.view.invalid()[0].reason, /service account "Web_Bad"/);
        assert.equal(client.view.invalidWorkloadCount(), 1);

        await fetch(`${url}/v2/apps/dev/web`, { method: 'DELETE' });
        await fetch(`${url}/v2/pods/prod/worker`, { method: 'DELETE' });
        await waitFor('deletions applied', () => client.view.invalidWorkloadCount() === 0 && !accounts(client).prod.includes('worker'));

        // a change at the root group (re-listed, debounced)
        await fetch(`${url}/v2/groups`, { method: 'PUT', body: JSON.stringify({ id: '/', apps: [{ id: '/solo2', cmd: 'x' }] }) });
        await waitFor('root group change', () => client.view.get('app', '/solo2') !== undefined && client.view.get('app', '/solo') === undefined);
        await client.idle();
        assert.equal(client.stats.connects, 1);
      });
    } finally {
      await sim.close();
    }
  });

  it('loses nothing when the simulator restarts: changes made while it was down show after the re-list', async () => {
    const sim = new MarathonSimulator({ agents: ['h1'] });
    const url = await sim.listen(0);
    const port = Number(new URL(url).port);
    sim.state.createApp({ id: '/a/one', cmd: 'x' });
    sim.state.createApp({ id: '/b/two', cmd: 'x', labels: { 'istio.io/service-account': 'two' } });
    try {
      await withClient({ urls: [url] }, async (client) => {
        await client.start();
        assert.deepEqual(Object.keys(accounts(client)), ['a', 'b']);
        await sim.close();
        await waitFor('client noticing the drop', () => !client.connected);
        // while Marathon is down: events nobody receives
        sim.state.deleteApp('/a/one');
        sim.state.createApp({ id: '/c/three', cmd: 'x', instances: 2, labels: { 'istio.io/service-account': 'three' } });
        sim.state.putApp('/b/two', { labels: { 'istio.io/service-account': 'deux' } });
        await sim.listen(port);
        await waitFor('view converged', () => client.connected && JSON.stringify(accounts(client)) === JSON.stringify({ b: ['default', 'deux'], c: ['default', 'three'] }));
        assert.deepEqual([...client.view.hostsOf({ namespace: 'c', serviceAccount: 'three' })], ['h1']);
        assert.ok(client.stats.connects >= 2);
        assert.ok(client.stats.relists >= 2);
      });
    } finally {
      await sim.close();
    }
  });

  it('re-lists when the event stream alone is cut, picking up what happened meanwhile', async () => {
    const sim = new MarathonSimulator();
    const url = await sim.listen(0);
    try {
      await withClient({ urls: [url], backoff: { initialMs: 300, maxMs: 300, jitter: 0 } }, async (client) => {
        await client.start();
        sim.dropEventStreams();
        await waitFor('drop noticed', () => !client.connected);
        sim.state.createApp({ id: '/late/app', cmd: 'x' }); // no subscriber: the event is lost
        await waitFor('late app after re-list', () => client.view.get('app', '/late/app') !== undefined);
        assert.equal(client.stats.connects, 2);
      });
    } finally {
      await sim.close();
    }
  });

  it('follows a standby\'s 302 to the leader, and tries HA URLs in turn', async () => {
    const leader = new MarathonSimulator();
    const leaderUrl = await leader.listen(0);
    const standby = new MarathonSimulator({ standbyOf: leaderUrl });
    const standbyUrl = await standby.listen(0);
    const dead = new MarathonSimulator();
    const deadUrl = await dead.listen(0);
    await dead.close(); // a port nobody listens on now
    leader.state.createApp({ id: '/ha/app', cmd: 'x' });
    try {
      await withClient({ urls: [deadUrl, standbyUrl] }, async (client, log) => {
        await client.start();
        assert.equal(client.currentUrl, `${leaderUrl}/`);
        assert.ok(client.view.get('app', '/ha/app'));
        assert.ok(log.some((l) => l.includes('redirected the event stream')));
        await fetch(`${standbyUrl}/v2/apps`, { method: 'POST', body: JSON.stringify({ id: '/ha/two', cmd: 'x' }) });
        await waitFor('event via the leader', () => client.view.get('app', '/ha/two') !== undefined);
      });
    } finally {
      await standby.close();
      await leader.close();
    }
  });

  it('fails over to the next Marathon when the leader goes away, and re-lists there', async () => {
    const a = new MarathonSimulator();
    const b = new MarathonSimulator();
    const urlA = await a.listen(0);
    const urlB = await b.listen(0);
    a.state.createApp({ id: '/from/a', cmd: 'x' });
    b.state.createApp({ id: '/from/b', cmd: 'x' });
    try {
      await withClient({ urls: [urlA, urlB] }, async (client) => {
        await client.start();
        assert.ok(client.view.get('app', '/from/a'));
        await a.close();
        await waitFor('failover to b', () => client.currentUrl === `${urlB}/` && client.connected);
        await waitFor('view of b', () => client.view.get('app', '/from/b') !== undefined && client.view.get('app', '/from/a') === undefined);
      });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('skips a malformed app with a logged JSON path and keeps the rest of the view', async () => {
    const sim = new MarathonSimulator();
    const url = await sim.listen(0);
    sim.state.createApp({ id: '/m/good', cmd: 'x' });
    sim.state.createApp({ id: '/m/bad', cmd: 'x' });
    // Marathon would never send this; a broken proxy or a bug might
    const bad = sim.state.apps.get('/m/bad')!;
    bad.def = { ...bad.def, labels: { owner: 42 } };
    try {
      await withClient({ urls: [url] }, async (client, log) => {
        await client.start();
        assert.ok(client.view.get('app', '/m/good'));
        assert.equal(client.view.get('app', '/m/bad'), undefined);
        const line = log.map((l) => JSON.parse(l)).find((l) => l.msg === 'skipping malformed marathon app');
        assert.ok(line, log.join('\n'));
        assert.match(line.path, /^\/apps\(\d\)\/labels\/owner$/);
        assert.equal(line.id, '/m/bad');
        assert.equal(line.reason, 'expected a string');
        assert.equal(client.stats.malformed, 1);
        // the same app re-read after an event: still skipped, the good one still updates
        await fetch(`${url}/v2/apps/m/good`, { method: 'PUT', body: JSON.stringify({ labels: { 'istio.io/service-account': 'g' } }) });
        await waitFor('good app updated', () => accounts(client).m?.includes('g'));
      });
    } finally {
      await sim.close();
    }
  });

  it('authenticates: credentials in the URL, user + password, DC/OS token file; wrong ones never connect', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'marathon-auth-'));
    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, 'jwt-abc\n');
    const sim = new MarathonSimulator({ credentials: 'alice:s3cret', token: 'jwt-abc' });
    const url = await sim.listen(0);
    sim.state.createApp({ id: '/auth/app', cmd: 'x' });
    try {
      const withCreds = url.replace('http://', 'http://alice:s3cret@');
      for (const opts of [{ urls: [withCreds] }, { urls: [url], username: 'alice', password: 's3cret' }, { urls: [url], tokenFile }]) {
        await withClient(opts, async (client) => {
          await client.start();
          assert.ok(client.view.get('app', '/auth/app'), JSON.stringify(opts));
          assert.equal(client.currentUrl?.includes('s3cret'), false);
        });
      }
      await withClient({ urls: [url], username: 'alice', password: 'wrong' }, async (client, log) => {
        const started = client.start();
        await waitFor('a 401 logged', () => log.some((l) => l.includes('HTTP 401')));
        assert.equal(client.connected, false);
        await client.stop();
        await assert.rejects(started, /stopped/);
      });
    } finally {
      await sim.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reconnects when the stream goes silent longer than the heartbeat timeout, not while heartbeats flow', async () => {
    const beating = new MarathonSimulator({ heartbeatMs: 40 });
    const silent = new MarathonSimulator({ heartbeatMs: 60_000 });
    const beatingUrl = await beating.listen(0);
    const silentUrl = await silent.listen(0);
    try {
      await withClient({ urls: [beatingUrl], heartbeatTimeoutMs: 200 }, async (client) => {
        await client.start();
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(client.stats.connects, 1);
        assert.ok(client.stats.heartbeats >= 5, `heartbeats: ${client.stats.heartbeats}`);
      });
      await withClient({ urls: [silentUrl], heartbeatTimeoutMs: 200 }, async (client) => {
        await client.start();
        await waitFor('a reconnect after silence', () => client.stats.connects >= 2);
      });
    } finally {
      await beating.close();
      await silent.close();
    }
  });
});
