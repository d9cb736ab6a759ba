/** Inputs the Marathon payload properties found, kept as plain tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MarathonParseError, parseApp } from '../../../src/marathon/model';

describe('Marathon payloads: inputs the properties found', () => {
  it('a legacy docker network named like an Object.prototype property is unknown, not a network mode', () => {
    // "network": "__proto__" gave networks [{ mode: Object.prototype }]; "constructor" gave mode Object
    for (const network of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      assert.throws(
        () => parseApp({ id: '/a', container: { type: 'DOCKER', docker: { image: 'x', network } } }),
        (e) => e instanceof MarathonParseError && e.path === '/container/docker/network' && e.reason === `unknown docker network "${network}"`,
      );
    }
    assert.deepEqual(parseApp({ id: '/a', container: { docker: { network: 'BRIDGE' } } }).networks, [{ mode: 'container/bridge' }]);
  });
});
