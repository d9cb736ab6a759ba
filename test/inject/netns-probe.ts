/**
 * A stand-in for Envoy and for the app in the traffic-capture test, run inside network
 * namespaces. Only node builtins, so it runs from a copy anywhere.
 *   listen <label>:<port>[@<address>],...   answers every connection with "<label> uid=<uid> capeff=<hex>"
 *   connect <host> <port> [uid]             prints what the listener answered, or "error <code>"
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';

const capEff = () => /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '?';

function listen(spec: string): void {
  const items = spec.split(',');
  let pending = items.length;
  for (const item of items) {
    const m = /^([^:]+):(\d+)(?:@(.+))?$/.exec(item);
    if (!m) throw new Error(`bad listen spec ${item}`);
    const [, label, port, address] = m;
    net
      .createServer((s) => s.end(`${label} uid=${process.getuid!()} capeff=${capEff()}\n`))
      .listen(Number(port), address ?? '0.0.0.0', () => {
        if (--pending === 0) process.stdout.write('ready\n');
      });
  }
}

function connect(host: string, port: string, uid?: string): void {
  if (uid !== undefined) {
    process.setgid!(Number(uid));
    process.setuid!(Number(uid));
  }
  const s = net.connect({ host, port: Number(port), timeout: 3000 });
  let data = '';
  s.setEncoding('utf8');
  s.on('data', (c: string) => (data += c));
  s.on('end', () => process.stdout.write(data));
  s.on('timeout', () => {
    process.stdout.write('error ETIMEDOUT\n');
    s.destroy();
  });
  s.on('error', (e: NodeJS.ErrnoException) => process.stdout.write(`error ${e.code}\n`));
}

// `node --test dist/test` runs every file under test/ too: without a mode this does nothing.
const [mode, ...args] = process.argv.slice(2);
if (mode === 'listen') listen(args[0]);
else if (mode === 'connect') connect(args[0], args[1], args[2]);
else if (mode !== undefined) throw new Error('usage: netns-probe listen <label>:<port>,... | connect <host> <port> [uid]');
