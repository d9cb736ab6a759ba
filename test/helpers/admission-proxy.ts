/** Starts `citadel admission-proxy` as a real child process, for tests and benchmarks. */
import { startListeningProcess, type ListeningProcess } from './listening-process';

export type AdmissionProxyProcess = ListeningProcess;

/** Runs `node dist/src/cli/main.js admission-proxy --marathon <url> --listen 127.0.0.1:0 ...args` until it prints where it listens. */
export function startAdmissionProxyProcess(marathon: string, args: string[] = [], timeoutMs = 10_000): Promise<AdmissionProxyProcess> {
  return startListeningProcess(['admission-proxy', '--marathon', marathon, '--listen', '127.0.0.1:0', ...args], /admission-proxy listening on (\S+) -> /, timeoutMs);
}
