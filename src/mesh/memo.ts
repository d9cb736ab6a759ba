/**
 * Built resources by a key that says everything they depend on, kept while snapshots use them:
 * what neither the current nor the previous snapshot asked for is dropped, so services that
 * left the mesh do not stay in memory.
 */
export class GenerationalMemo<V> {
  private current = new Map<string, V>();
  private previous = new Map<string, V>();
  builds = 0;
  hits = 0;

  get(key: string, build: () => V): V {
    let v = this.current.get(key);
    if (v === undefined) {
      v = this.previous.get(key);
      if (v === undefined) {
        this.builds++;
        v = build();
      } else {
        this.hits++;
      }
      this.current.set(key, v);
    } else {
      this.hits++;
    }
    return v;
  }

  /** A new snapshot: what the last one did not use is forgotten after this one. */
  advance(): void {
    this.previous = this.current;
    this.current = new Map();
  }
}
