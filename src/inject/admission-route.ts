/**
 * Which Marathon requests the admission proxy reads: the writes of definitions (POST, PUT, PATCH
 * of /v2/pods, /v2/apps and /v2/groups). Everything else is streamed through untouched.
 */

export type DefinitionResource = 'pods' | 'apps' | 'groups';

/** A write of Marathon definitions. */
export interface AdmissionRoute {
  resource: DefinitionResource;
  method: 'POST' | 'PUT' | 'PATCH';
  /** the id in the path (`/prod/api` of PUT /v2/pods/prod/api; `/` for /v2/groups), as written */
  id?: string;
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH']);

export function isDefinitionWriteMethod(method: string): method is AdmissionRoute['method'] {
  return WRITE_METHODS.has(method);
}

/**
 * Why the path of a write is refused before routing, or undefined. Marathon's server (Jetty,
 * Jersey) resolves dot segments, empty segments, escapes and `;` parameters the proxy's routing
 * would not see, so a write whose path is not in canonical form could reach /v2/pods unread; and
 * Marathon takes writes only under /v2/, so a path elsewhere (`/service/marathon/v2/pods` through
 * DC/OS's router) would bypass the proxy's reading too.
 */
export function nonCanonicalWritePath(rawPath: string): string | undefined {
  if (!rawPath.startsWith('/v2/')) return `writes go only to Marathon's API under /v2/ (got ${rawPath}); point --marathon at Marathon itself, with any path prefix such as /service/marathon`;
  if (/[%;\\#]/.test(rawPath) || /\/\/|\/\.\.?(\/|$)/.test(rawPath)) {
    return `path ${rawPath} is not in canonical form (no empty or dot segments, escapes or ; parameters); write it plainly, e.g. /v2/pods/prod/api`;
  }
  return undefined;
}

/** The route of a write to `path` (canonical, without the query), or undefined when its body is not a definition. */
export function admissionRouteOf(method: string, path: string): AdmissionRoute | undefined {
  if (!isDefinitionWriteMethod(method)) return undefined;
  const m = /^\/v2\/(pods|apps|groups)(?:\/(.*))?$/.exec(path);
  if (!m) return undefined;
  const resource = m[1] as DefinitionResource;
  const rest = (m[2] ?? '').replace(/\/+$/, '');
  if (rest === '') return resource === 'groups' ? { resource, method, id: '/' } : { resource, method };
  // Sub-resources take no definitions: pod ::status/::instances, app {id}/restart|tasks|versions,
  // group {id}/versions. Jersey routes `<id>/tasks...` to them (more literal characters win),
  // never to the app, so only a segment after some id is one; `/v2/apps/tasks/x` is the app /tasks/x.
  if (resource === 'pods' && rest.includes('::')) return undefined;
  if (resource === 'apps' && /^.+\/(restart|tasks|versions)(\/.*)?$/.test(rest)) return undefined;
  if (resource === 'groups' && /^.+\/versions(\/.*)?$/.test(rest)) return undefined;
  return { resource, method, id: `/${rest}` };
}
