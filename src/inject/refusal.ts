/** What the admission proxy answers instead of Marathon, in Marathon's own error format (API-NOTES.md, "Errors"). */

/** One entry of Marathon's `details`: a JSON path in Marathon's notation (`/containers(1)/volumeMounts(0)`) and what is wrong there. */
export interface RefusalDetail {
  path: string;
  errors: string[];
}

export interface Refusal {
  status: number;
  body: { message: string; details?: RefusalDetail[] | string };
}

/** 422 `{"message":"Object is not valid","details":[...]}`, as Marathon answers a definition its validation refuses. */
export function objectNotValid(details: RefusalDetail[], message = 'Object is not valid'): Refusal {
  return { status: 422, body: { message, details } };
}

/** One detail per path, the errors of a path together, in the order first seen. */
export function groupDetails(problems: Array<{ path: string; error: string }>): RefusalDetail[] {
  const byPath = new Map<string, string[]>();
  for (const p of problems) {
    const path = p.path || '/';
    const errors = byPath.get(path) ?? [];
    if (!errors.includes(p.error)) errors.push(p.error);
    byPath.set(path, errors);
  }
  return [...byPath].map(([path, errors]) => ({ path, errors }));
}
