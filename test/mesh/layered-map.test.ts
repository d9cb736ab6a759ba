import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LayeredMap } from '../../src/mesh/layered-map';

describe('LayeredMap', () => {
  it('reads like a Map after any sequence of changes, and every earlier version stays as it was', () => {
    const change = fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.option(fc.integer(), { nil: undefined })), { maxLength: 12 });
    fc.assert(
      fc.property(fc.array(change, { maxLength: 60 }), (batches) => {
        const versions: Array<[LayeredMap<number, number>, Map<number, number>]> = [[LayeredMap.of(), new Map()]];
        for (const batch of batches) {
          const [map, model] = versions[versions.length - 1];
          const next = new Map(model);
          for (const [k, v] of batch) {
            if (v === undefined) next.delete(k);
            else next.set(k, v);
          }
          versions.push([map.with(new Map(batch)), next]);
        }
        for (const [map, model] of versions) {
          assert.equal(map.size, model.size);
          assert.deepEqual(new Map(map), model);
          assert.deepEqual([...map.keys()].sort(), [...model.keys()].sort());
          for (let k = 0; k <= 40; k++) {
            assert.equal(map.get(k), model.get(k));
            assert.equal(map.has(k), model.has(k));
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('keeps the order of the map it was made from, new keys last', () => {
    const m = LayeredMap.of(new Map([['a', 1], ['b', 2], ['c', 3]])).with(new Map([['b', 20], ['d', 4], ['a', undefined]]));
    assert.deepEqual([...m], [['b', 20], ['c', 3], ['d', 4]]);
    const seen: string[] = [];
    m.forEach((v, k) => seen.push(`${k}=${v}`));
    assert.deepEqual(seen, ['b=20', 'c=3', 'd=4']);
  });
});
