/**
 * Built resources by a key that says everything they depend on. An entry lives as long as
 * something else holds its value (the proxies' current results do): no generation counting, and
 * a service that left the mesh leaves nothing behind once no proxy refers to it.
 */
export class WeakMemo<V extends object> {
  private readonly refs = new Map<string, WeakRef<V>>();
  private readonly registry = new FinalizationRegistry<string>((key) => {
    if (this.refs.get(key)?.deref() === undefined) this.refs.delete(key);
  });
  builds = 0;
  hits = 0;

  get(key: string, build: () => V): V {
    const found = this.refs.get(key)?.deref();
    if (found !== undefined) {
      this.hits++;
      return found;
    }
    this.builds++;
    const v = build();
    this.refs.set(key, new WeakRef(v));
    this.registry.register(v, key);
    return v;
  }
}
