/** `citadel agent` as a real child process (SDS and/or file mode), with its monitoring port's JSON. */
import { CitadelProcess, LogLine, spawnCitadel } from './citadel-process';

export interface AgentCertificate {
  spiffeId: string;
  serial: string;
  notAfter: string;
}

/** What /debug/sds answers. */
export interface AgentSdsDebug {
  identities: Array<{ spiffeId: string; socket: string; streams: number; proxies: string[] }>;
  certificates: AgentCertificate[];
  lastNack?: { identity: string; message: string };
}

export interface CitadelAgentProcess extends CitadelProcess {
  monitoringPort: number;
  /** When the process was spawned and when it logged `agent running` (performance.now()). */
  spawnedAt: number;
  runningAt: number;
  debugSds(): Promise<AgentSdsDebug>;
  /** The serial (lower-case hex, as Envoy's /certs shows it) of an identity's current certificate. */
  serialOf(spiffeId: string): Promise<string | undefined>;
  metrics(): Promise<string>;
}

/**
 * Runs `citadel agent --monitoring-port 0 --log-format json ...args` and resolves once it logs
 * `agent running` (node credential obtained, first placement snapshot applied).
 */
export async function startCitadelAgent(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CitadelAgentProcess> {
  const spawnedAt = performance.now();
  const p = spawnCitadel(['agent', '--monitoring-port', '0', '--log-format', 'json', ...args], { env: opts.env });
  let running: LogLine;
  try {
    running = await p.waitForLog((l) => l.msg === 'agent running', opts.timeoutMs ?? 20_000);
  } catch (err) {
    await p.stop('SIGKILL');
    throw err;
  }
  const runningAt = performance.now();
  const port = Number(running.monitoringPort);
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return res.text();
  };
  const debugSds = async () => JSON.parse(await get('/debug/sds')) as AgentSdsDebug;
  return {
    ...p,
    monitoringPort: port,
    spawnedAt,
    runningAt,
    debugSds,
    serialOf: async (id) => (await debugSds()).certificates.find((c) => c.spiffeId === id)?.serial.toLowerCase(),
    metrics: () => get('/metrics'),
  };
}
