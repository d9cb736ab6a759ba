/** Starts `citadel marathon-sim` as a real child process, for tests that need Marathon. */
import * as path from 'node:path';
import { repoRoot, startListeningProcess, type ListeningProcess } from './listening-process';

export { repoRoot };
/** shared/marathon beside the repository (CI clones the repo with shared/ next to it). */
export const sharedMarathonDir = path.resolve(repoRoot, '..', 'shared', 'marathon');

export type MarathonSimProcess = ListeningProcess;

/**
 * Runs `node dist/src/cli/main.js marathon-sim --port 0 ...args` and resolves with its URL once it
 * prints `marathon-sim listening on <url>`. Example args: ['--seed', file, '--credentials', 'u:p',
 * '--agents', 'a1,a2', '--heartbeat-interval', '200ms', '--standby-of', leaderUrl].
 */
export function startMarathonSimProcess(args: string[] = [], timeoutMs = 10_000): Promise<MarathonSimProcess> {
  return startListeningProcess(['marathon-sim', '--port', '0', ...args], /marathon-sim listening on (\S+)/, timeoutMs);
}
