/** Helpers shared by the gRPC benchmarks: a child process's CPU time, and starting one. */
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** utime + stime of a process in microseconds (from /proc/<pid>/stat; USER_HZ is 100 on Linux). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // fields 14 and 15 of stat(5)
}

/** Starts bench/grpc-ca-process.js and waits for its port. */
export async function startCaProcess(dir: string, hosts: number | 'echo' = 0, perHost = 0): Promise<{ child: ChildProcess; port: number; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [...(process.env.CA_NODE_ARGS?.split(' ').filter(Boolean) ?? []), path.join(__dirname, 'grpc-ca-process.js'), dir, String(hosts), String(perHost)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`CA process exited with ${code}`)));
  });
  const { port } = JSON.parse(line) as { port: number };
  return {
    child, port, pid: child.pid!,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
