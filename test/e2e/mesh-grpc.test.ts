/**
 * Proxyless gRPC in the mesh, configured only by citadel xDS: an echo server with
 * XdsServerCredentials (/shop/echo) and a client with XdsChannelCredentials on an xds:/// target
 * (/shop/caller), each a child process with its bootstrap from `citadel grpc-bootstrap` in
 * GRPC_XDS_BOOTSTRAP_CONFIG. Both reach xDS over the node agent's per-identity `xds` socket
 * (insecure channel credentials on the Unix socket) and read their certificates from the agent's
 * files (file_watcher). The server's CA makes short-lived certificates, so they rotate while the
 * processes run. To see what grpc-js-xds does: GRPC_TRACE=xds_client GRPC_VERBOSITY=DEBUG
 * E2E_GRPC_LOG=/tmp/grpc writes each child's stderr to /tmp/grpc.<service account>.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { bundleFor, testCa } from '../helpers/pki';
import { waitFor } from '../helpers/wait';
import type { CertificateSeen, EchoReply } from './grpc/echo';
import { freePort, MeshCluster, meshApp, serialOf, type Identity, type Task } from '../helpers/mesh-cluster';

const ECHO = { namespace: 'shop', serviceAccount: 'echo' };
const CALLER = { namespace: 'shop', serviceAccount: 'caller' };
const ECHO_ID = 'spiffe://cluster.local/ns/shop/sa/echo';
const CALLER_ID = 'spiffe://cluster.local/ns/shop/sa/caller';

/** STRICT for the whole mesh; ISTIO_MUTUAL to the echo server, which has no sidecar for auto mTLS to see (docs/mesh.md). */
const POLICY = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: echo-shop.marathon.mesos
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`;

type CallResult = { ok: true; reply: EchoReply; server?: CertificateSeen } | { ok: false; code: string; details: string };

/** A child process that prints JSON lines: `{"ready": ...}` first, then one line per request. */
class JsonLineProcess {
  private readonly waiting = new Map<number, (r: CallResult) => void>();
  private nextId = 1;
  private stderr = '';
  readonly ready: Promise<unknown>;

  constructor(readonly child: ChildProcess, what: string) {
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (this.stderr = (this.stderr + c).slice(-20_000)));
    let markReady: (v: unknown) => void;
    this.ready = new Promise((resolve, reject) => {
      markReady = resolve;
      child.once('exit', (code, signal) => reject(new Error(`${what} exited (${signal ?? code}) before it was ready: ${this.stderr}`)));
    });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { ready?: unknown; id?: number };
      if (m.ready !== undefined) markReady(m.ready);
      else if (m.id !== undefined) this.waiting.get(m.id)?.(m as unknown as CallResult);
    });
  }

  call(request: Record<string, unknown>): Promise<CallResult> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.stdin!.write(`${JSON.stringify({ id, ...request })}\n`);
    });
  }

  get log(): string {
    return this.stderr;
  }
}

describe('mesh end to end: proxyless gRPC (grpc-js-xds) configured by citadel xDS', () => {
  let cluster: MeshCluster;
  let echoTask: Task;
  let port = 0;
  let server: JsonLineProcess;
  let client: JsonLineProcess;
  const target = () => `xds:///echo-shop.marathon.mesos:${port}`;
  const pem = (id: Identity, file: string) => readFileSync(path.join(cluster.filesDir(id), file), 'utf8');

  /** A child running one of the scripts in ./grpc with the bootstrap `citadel grpc-bootstrap` made for `service`. */
  function start(script: string, service: string, id: Identity, task: Task, args: string[] = []): JsonLineProcess {
    const bootstrap = cluster.bootstrap('grpc-bootstrap', `${id.serviceAccount}.json`, [
      '--service', service, '--service-account', id.serviceAccount, '--instance-ip', task.ip, '--instance-id', task.id,
      '--certs-dir', cluster.filesDir(id), '--socket-dir', cluster.socketDir(id), '--refresh-interval', '1s',
    ]);
    const child = spawn(process.execPath, [path.join(__dirname, 'grpc', script), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: bootstrap },
    });
    if (process.env.E2E_GRPC_LOG) child.stderr!.pipe(createWriteStream(`${process.env.E2E_GRPC_LOG}.${id.serviceAccount}`));
    return new JsonLineProcess(cluster.adopt(child), script);
  }

  before(async () => {
    // Workload certificates live 12 s and are renewed 6 s before they expire.
    cluster = await MeshCluster.start({ sds: true, files: true, serverArgs: ['--workload-cert-ttl', '12s', '--workload-cert-min-grace-period', '6s'] });
    port = await freePort();
    const apply = cluster.applyPolicy('grpc-strict', POLICY);
    await cluster.deploy(meshApp('/shop/echo', 'echo', port, { portName: 'grpc', sidecar: false }));
    await cluster.deploy(meshApp('/shop/caller', 'caller', await freePort(), { portName: 'grpc', sidecar: false }));
    [echoTask] = await cluster.running('/shop/echo');
    const [callerTask] = await cluster.running('/shop/caller');
    await cluster.identityReady(ECHO);
    await cluster.identityReady(CALLER);
    await apply.done;
    server = start('echo-server.js', '/shop/echo', ECHO, echoTask, [`${echoTask.ip}:${port}`]);
    client = start('echo-client.js', '/shop/caller', CALLER, callerTask);
    try {
      await Promise.all([server.ready, client.ready]);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- server ---\n${server.log}\n--- agent ---\n${cluster.agentLogTail()}`);
    }
  });

  after(async () => {
    await cluster?.close();
  });

  it('STRICT admits the xds:/// client over mTLS: each side sees the other’s SPIFFE ID', async () => {
    const r = await client.call({ kind: 'xds', target: target() });
    assert.ok(r.ok, `the call: ${JSON.stringify(r)}\n--- server ---\n${server.log}`);
    assert.equal(r.reply.transportSecurityType, 'ssl');
    assert.equal(r.reply.peer?.uri, CALLER_ID);
    assert.equal(r.server?.uri, ECHO_ID);
  });

  it('STRICT refuses a plaintext client and a client with another root’s certificate', async (t) => {
    const plain = await client.call({ kind: 'plaintext', target: `${echoTask.ip}:${port}` });
    assert.equal(plain.ok, false);
    assert.equal(!plain.ok && plain.code, 'UNAVAILABLE', JSON.stringify(plain));
    const foreign = bundleFor(testCa(), 'shop', 'caller');
    const other = await client.call({ kind: 'tls', target: `${echoTask.ip}:${port}`, rootPem: pem(ECHO, 'root-cert.pem'), certPem: foreign.certChainPem, keyPem: foreign.keyPem });
    assert.equal(other.ok, false, JSON.stringify(other));
    t.diagnostic(`refused under STRICT: plaintext ${JSON.stringify(plain)}, another root ${JSON.stringify(other)}`);
    // The check can fail: the same direct TLS call with the caller's mesh certificate is admitted.
    const mesh = await client.call({ kind: 'tls', target: `${echoTask.ip}:${port}`, rootPem: pem(ECHO, 'root-cert.pem'), certPem: pem(CALLER, 'cert-chain.pem'), keyPem: pem(CALLER, 'key.pem') });
    assert.ok(mesh.ok, JSON.stringify(mesh));
  });

  it('rotated certificates are used by both processes with no restart', async (t) => {
    const pids = [server.child.pid, client.child.pid];
    const first = await client.call({ kind: 'xds', target: target() });
    assert.ok(first.ok, JSON.stringify(first));
    const before = { caller: first.reply.peer!.serial, echo: first.server!.serial };
    const rotatedAt = await waitFor('both identities’ files rotated', () => {
      const now = { caller: serialOf(pem(CALLER, 'cert-chain.pem')), echo: serialOf(pem(ECHO, 'cert-chain.pem')) };
      return now.caller !== before.caller && now.echo !== before.echo && { ...now, at: Date.now() };
    }, 20_000);
    const seen = await waitFor('a new connection with the new certificates', async () => {
      const r = await client.call({ kind: 'xds', target: target() });
      if (!r.ok) throw new Error(JSON.stringify(r));
      return r.reply.peer!.serial !== before.caller && r.server!.serial !== before.echo && { r, at: Date.now() };
    }, 10_000);
    t.diagnostic(`rotation: both sides used the new certificates ${seen.at - rotatedAt.at} ms after both files had changed`);
    assert.ok(seen.r.ok);
    // The newest, or the one after it if the files rotated again meanwhile.
    const current = { caller: serialOf(pem(CALLER, 'cert-chain.pem')), echo: serialOf(pem(ECHO, 'cert-chain.pem')) };
    assert.ok([rotatedAt.caller, current.caller].includes(seen.r.reply.peer!.serial));
    assert.ok([rotatedAt.echo, current.echo].includes(seen.r.server!.serial));
    assert.equal(seen.r.reply.peer!.uri, CALLER_ID);
    assert.deepEqual([server.child.pid, client.child.pid], pids);
    assert.equal(server.child.exitCode, null, 'the server still runs');
  });

  it('PERMISSIVE without the DestinationRule: plaintext admitted and the client follows; STRICT again: mTLS; the same server process throughout', async (t) => {
    const pid = server.child.pid;
    const direct = `${echoTask.ip}:${port}`;
    const removed = cluster.citadel('policy', 'delete', 'dr', 'echo', '-n', 'shop', '--store', cluster.store);
    assert.equal(removed.code, 0, removed.err);
    const permissive = cluster.applyPolicy('grpc-permissive', POLICY.split('---')[0].replace('STRICT', 'PERMISSIVE'));
    const { exitedAt: permissiveAt } = await permissive.done;
    const toPlaintext = await waitFor('plaintext admitted and the xds client in plaintext', async () => {
      const plain = await client.call({ kind: 'plaintext', target: direct });
      const viaXds = await client.call({ kind: 'xds', target: target() });
      return plain.ok && viaXds.ok && viaXds.reply.peer === undefined && Date.now();
    }, 15_000);
    t.diagnostic(`gRPC server STRICT -> PERMISSIVE (plaintext): within ${toPlaintext - permissiveAt} ms after citadel policy apply exited (${toPlaintext - permissive.startedAt} ms from its start)`);
    const strict = cluster.applyPolicy('grpc-strict-again', POLICY);
    const { exitedAt: strictAt } = await strict.done;
    const toMtls = await waitFor('mTLS again, plaintext refused', async () => {
      const plain = await client.call({ kind: 'plaintext', target: direct });
      const viaXds = await client.call({ kind: 'xds', target: target() });
      return !plain.ok && viaXds.ok && viaXds.reply.peer?.uri === CALLER_ID && Date.now();
    }, 15_000);
    t.diagnostic(`gRPC server PERMISSIVE -> STRICT (mTLS): within ${toMtls - strictAt} ms after citadel policy apply exited (${toMtls - strict.startedAt} ms from its start)`);
    assert.equal(server.child.pid, pid);
    assert.equal(server.child.exitCode, null, 'the server survived both switches (grpc-js-xds 1.14 crashes on plaintext -> mTLS unless the listeners differ in their filters)');
  });

  it('citadel proxy-status: both gRPC nodes, via the agent, SYNCED; a client with no channel left is gone', async () => {
    // The client's channels so far were closed after their call: grpc-js-xds ended its ADS stream each time.
    await waitFor('only the server connected', () => {
      const s = cluster.proxyStatus();
      if (s.length === 1 && s[0].marathonId === '/shop/echo') return s;
      throw new Error(JSON.stringify(s));
    }, 10_000);
    const held = await client.call({ kind: 'xds', target: target(), keep: true });
    assert.ok(held.ok, JSON.stringify(held));
    const status = await waitFor('both gRPC nodes synced', () => {
      const s = cluster.proxyStatus();
      if (s.length === 2 && s.every((p) => p.types.LDS.status === 'SYNCED')) return s;
      throw new Error(JSON.stringify(s));
    }, 10_000);
    const byWorkload = new Map(status.map((p) => [p.marathonId, p]));
    assert.equal(byWorkload.get('/shop/echo')?.nodeId, `grpc~${echoTask.ip}~${echoTask.id}`);
    const caller = byWorkload.get('/shop/caller')!;
    assert.deepEqual([caller.types.CDS.status, caller.types.EDS.status], ['SYNCED', 'SYNCED']);
    for (const p of status) assert.equal(p.via, 'agent-1');
  });
});
