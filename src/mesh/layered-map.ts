/**
 * An immutable map that shares what did not change with the map it was made from: a base map
 * plus a small layer of changes, folded into a new base once the layer outgrows the square root
 * of the size. A change then costs about √n, not n, and every version stays readable.
 */

/** Marks a key the layer removed from the base. */
const REMOVED = Symbol('removed');
type Layer<K, V> = ReadonlyMap<K, V | typeof REMOVED>;

export class LayeredMap<K, V> implements ReadonlyMap<K, V> {
  private constructor(
    private readonly base: ReadonlyMap<K, V>,
    private readonly layer: Layer<K, V>,
    readonly size: number,
  ) {}

  static of<K, V>(entries: ReadonlyMap<K, V> = new Map()): LayeredMap<K, V> {
    return new LayeredMap(new Map(entries), new Map(), entries.size);
  }

  get(key: K): V | undefined {
    const v = this.layer.get(key);
    if (v === undefined) return this.base.get(key);
    return v === REMOVED ? undefined : v;
  }

  has(key: K): boolean {
    const v = this.layer.get(key);
    return v === undefined ? this.base.has(key) : v !== REMOVED;
  }

  /** A new map with `changes` applied (a value sets the key, undefined removes it); this one is unchanged. */
  with(changes: ReadonlyMap<K, V | undefined>): LayeredMap<K, V> {
    const layer = new Map<K, V | typeof REMOVED>(this.layer);
    let size = this.size;
    for (const [k, v] of changes) {
      const had = this.has(k);
      if (v === undefined) {
        if (!had) continue;
        if (this.base.has(k)) layer.set(k, REMOVED);
        else layer.delete(k);
        size--;
      } else {
        layer.set(k, v);
        if (!had) size++;
      }
    }
    const next = new LayeredMap<K, V>(this.base, layer, size);
    return layer.size * layer.size > Math.max(size, 64) ? LayeredMap.of(new Map(next)) : next;
  }

  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) {
      const over = this.layer.get(k);
      if (over === undefined) yield [k, v];
      else if (over !== REMOVED) yield [k, over];
    }
    for (const [k, v] of this.layer) if (v !== REMOVED && !this.base.has(k)) yield [k, v];
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this);
  }
}
