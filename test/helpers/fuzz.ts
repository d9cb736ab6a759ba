/** Run counts and shared checks for the property tests under test/fuzz. */
import type { Parameters } from 'fast-check';

/**
 * How many cases a property runs: `defaultRuns` in `npm test` (a few seconds for the whole set),
 * CITADEL_FUZZ_RUNS when set (`npm run fuzz`), at most `maxRuns` (for properties whose cases are big).
 */
export function fuzzRuns(defaultRuns: number, maxRuns = Infinity): number {
  const env = process.env.CITADEL_FUZZ_RUNS;
  if (env === undefined || env === '') return defaultRuns;
  const n = Number(env);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`CITADEL_FUZZ_RUNS=${env}: expected a positive whole number`);
  return Math.min(n, maxRuns);
}

/** fc.assert parameters: the run count, and CITADEL_FUZZ_SEED to replay a failure fast-check reported. */
export function fuzzParameters<T>(defaultRuns: number, maxRuns = Infinity): Parameters<T> {
  const seed = process.env.CITADEL_FUZZ_SEED;
  return { numRuns: fuzzRuns(defaultRuns, maxRuns), includeErrorInReport: true, ...(seed ? { seed: Number(seed) } : {}) };
}

type ErrorType = abstract new (...args: never[]) => Error;

/**
 * Runs `parse` and returns what it returned, or the error it threw when that error is one of
 * `allowed`; any other error (a TypeError, a RangeError, ...) is rethrown, failing the property.
 */
export function parseOrOwnError<T>(allowed: ErrorType[], parse: () => T): { value: T } | { error: Error } {
  try {
    return { value: parse() };
  } catch (err) {
    if (allowed.some((type) => err instanceof type)) return { error: err as Error };
    throw err;
  }
}
