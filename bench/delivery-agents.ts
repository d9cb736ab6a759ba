/**
 * A group of node agents for bench/grpc-delivery.js, as a process of its own: on a real cluster
 * each agent is a process on its own host, so the benchmark spreads its agents over a few
 * processes rather than serialising all of them on one event loop.
 *
 *   node dist/bench/delivery-agents.js <ca-port> <ca-root.pem> <certs-root> <identities-per-host>
 *
 * Reads `[{"host": "...", "token": "..."}]` on stdin, starts one NodeAgent (file mode) per host, and prints
 * a JSON line per event: {"credential": host}, {"synced": host} (first files written), and
 * {"complete": host} once the host's directory holds all of its identities. SIGTERM stops the
 * agents and exits.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { NodeAgent } from '../src/agent/node-agent';

// Each agent of the group shares this process's libuv threadpool (a real agent has its own).
process.env.UV_THREADPOOL_SIZE ??= '8';

async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const [port, rootFile, certsRoot, perHostArg] = argv;
  const perHost = Number(perHostArg);
  const caRootPem = readFileSync(rootFile, 'utf8');
  const hosts = JSON.parse(await readStdin()) as Array<{ host: string; token: string }>;
  const say = (event: object) => process.stdout.write(JSON.stringify(event) + '\n');
  const agents = hosts.map(({ host, token }) => {
    const agent = new NodeAgent({ caAddress: `127.0.0.1:${port}`, caRootPem, joinToken: token, host, certsDir: path.join(certsRoot, host) });
    agent.once('credential', () => say({ credential: host }));
    agent.once('synced', () => say({ synced: host }));
    let complete = false;
    agent.on('synced', (present: unknown[]) => {
      if (!complete && present.length === perHost) {
        complete = true;
        say({ complete: host });
      }
    });
    return agent;
  });
  process.on('SIGTERM', () => {
    Promise.all(agents.map((a) => a.stop())).finally(() => process.exit(0));
  });
  await Promise.all(agents.map((a) => a.start()));
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
