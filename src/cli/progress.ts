/**
 * Progress of long work (`store migrate`, `store rekey`, `store secure` over thousands of
 * secrets): one line on stderr, rewritten in place at most ten times a second, and only when
 * stderr is a terminal. Piped or logged, a command prints its result and nothing else.
 */
export class TerminalProgress {
  private shownAt = 0;
  private dirty = false;
  private skipped: string | undefined;

  constructor(
    private readonly out: { isTTY?: boolean; write(s: string): unknown } = process.stderr,
    private readonly intervalMs = 100,
  ) {}

  get enabled(): boolean {
    return this.out.isTTY === true;
  }

  /** Shows `line` in place of the last one (skipped if one was shown less than the interval ago, unless `force`). */
  readonly show = (line: string, force = false): void => {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.shownAt < this.intervalMs) {
      this.skipped = line;
      return;
    }
    this.shownAt = now;
    this.skipped = undefined;
    this.out.write(`\r${line}\x1b[K`);
    this.dirty = true;
  };

  /** Shows the last line given and ends it, so what follows (the result, or an error) starts on a line of its own. */
  end(): void {
    if (this.skipped !== undefined) this.show(this.skipped, true);
    if (this.dirty) this.out.write('\n');
    this.dirty = false;
  }

  /** Runs `work` with this progress line, ending it however the work ends. */
  async around<T>(work: (show: (line: string, force?: boolean) => void) => Promise<T>): Promise<T> {
    try {
      return await work(this.show);
    } finally {
      this.end();
    }
  }
}
