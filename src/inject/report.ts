import type { InjectReport } from './injector';

/** One line per resource, for people (stderr): `injected /prod/api (pod, converted from app)`, `skipped /x: host networking`. */
export function formatReport(r: InjectReport): string {
  if (r.outcome === 'skipped') return `skipped ${r.id}: ${r.reason}`;
  const how = ['pod', ...(r.convertedFromApp ? ['converted from app'] : []), ...(r.upgraded ? ['sidecar replaced'] : [])];
  const lines = [`injected ${r.id} (${how.join(', ')})`];
  for (const n of r.notCarried) lines.push(`  not carried over: ${n}`);
  for (const c of r.changed) lines.push(`  changed: ${c}`);
  return lines.join('\n');
}
