/** The nearest-rank percentile `p` (0 to 100) of samples sorted ascending; undefined for none. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
