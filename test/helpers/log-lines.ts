/** Reads a citadel process's JSON log lines (stderr) as they come, for tests that wait on them. */
import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface LogLines {
  /** Every line so far, parsed (a line that is not JSON is `{ level: 'raw', msg }`). */
  lines(): LogLine[];
  /** Everything written so far, as written. */
  raw(): string;
  /** Resolves with the first line (already seen or to come) that matches; fails on timeout or exit. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export function collectLogLines(child: ChildProcess, stream: Readable = child.stderr!): LogLines {
  const lines: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let raw = '';
  let buffer = '';
  stream.setEncoding('utf8').on('data', (chunk: string) => {
    raw += chunk;
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text);
      } catch {
        line = { level: 'raw', msg: text };
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (!w.match(line)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    lines: () => lines,
    raw: () => raw,
    waitForLog: (match, timeoutMs = 15_000) =>
      new Promise<LogLine>((resolve, reject) => {
        const seen = lines.find(match);
        if (seen) return resolve(seen);
        const t = setTimeout(() => reject(new Error(`log line not seen within ${timeoutMs} ms; output:\n${raw.slice(-3000)}`)), timeoutMs);
        waiters.push({ match, resolve: (l) => (clearTimeout(t), resolve(l)) });
        exited.then((code) => reject(new Error(`the process exited (${code}) before the log line; output:\n${raw.slice(-3000)}`)));
      }),
  };
}
