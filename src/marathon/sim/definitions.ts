/**
 * The simulator's checks and normal form for app and pod definitions, with Marathon's error
 * bodies: wrong JSON types -> 422 "Invalid JSON" (error.expected.*), rule violations -> 422
 * "Object is not valid"; paths written `/container/volumes(0)/mode`.
 */

export type Json = unknown;
export type Obj = Record<string, Json>;

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: unknown, readonly headers: Record<string, string> = {}) {
    super(typeof body === 'object' && body !== null && 'message' in body ? String((body as { message: unknown }).message) : `HTTP ${status}`);
    this.name = 'ApiError';
  }
}

export interface Violation {
  path: string;
  errors: string[];
}

export const notValid = (details: Violation[]) => new ApiError(422, { message: 'Object is not valid', details });
export const invalidJson = (details: Violation[]) => new ApiError(422, { message: 'Invalid JSON', details });

export const isObj = (v: Json): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const SEGMENT = /^(([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$|^(\.|\.\.)$/;
const RESERVED_LAST = new Set(['restart', 'tasks', 'versions', '.', '..']);
/** Marathon requires DNS-label container names; the simulator also accepts upper case, as Marathon's own system-test pods use it. */
const CONTAINER_NAME = /^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/** Resolves `id` against `base` (relative ids are relative to the enclosing group) and canonicalises it. */
export function resolveId(id: string, base = '/'): string {
  const parts = (id.startsWith('/') ? id : `${base.replace(/\/$/, '')}/${id}`).split('/');
  const out: string[] = [];
  for (const p of parts) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return `/${out.join('/')}`;
}

/** Problems with a path id (already absolute) as Marathon reports them. */
export function pathIdErrors(raw: string, isGroup = false): string[] {
  const segments = raw.split('/').filter((s) => s.length > 0);
  const errors: string[] = [];
  if (!isGroup && segments.length === 0) errors.push('Path id must not be empty');
  for (const s of segments) {
    if (!SEGMENT.test(s)) {
      errors.push(
        'must fully match regular expression \'^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])|(\\.|\\.\\.)$\'',
      );
      break;
    }
  }
  const last = segments[segments.length - 1];
  if (!isGroup && last !== undefined && RESERVED_LAST.has(last)) errors.push(`must not end with ${[...RESERVED_LAST].join(', ')}`);
  return errors;
}

// --- JSON type checks ----------------------------------------------------------------------

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array';
const EXPECTED: Record<Kind, string> = {
  string: 'error.expected.jsstring',
  number: 'error.expected.jsnumber',
  boolean: 'error.expected.jsboolean',
  object: 'error.expected.jsobject',
  array: 'error.expected.jsarray',
};

class TypeChecker {
  readonly problems: Violation[] = [];
  check(v: Json, kind: Kind, path: string): boolean {
    if (v === undefined || v === null) return false;
    const ok =
      kind === 'array' ? Array.isArray(v) : kind === 'object' ? isObj(v) : kind === 'number' ? typeof v === 'number' && Number.isFinite(v) : typeof v === kind;
    if (!ok) this.problems.push({ path, errors: [EXPECTED[kind]] });
    return ok;
  }
  stringMap(v: Json, path: string): void {
    if (this.check(v, 'object', path)) for (const [k, x] of Object.entries(v as Obj)) this.check(x, 'string', `${path}/${k}`);
  }
  env(v: Json, path: string): void {
    if (!this.check(v, 'object', path)) return;
    for (const [k, x] of Object.entries(v as Obj)) {
      if (isObj(x)) this.check(x.secret, 'string', `${path}/${k}/secret`);
      else this.check(x, 'string', `${path}/${k}`);
    }
  }
  arrayOf(v: Json, kind: Kind, path: string, each?: (x: Json, p: string) => void): void {
    if (!this.check(v, 'array', path)) return;
    (v as Json[]).forEach((x, i) => {
      const p = `${path}(${i})`;
      if (this.check(x, kind, p) && each) each(x, p);
    });
  }
  throwIfAny(): void {
    if (this.problems.length > 0) throw invalidJson(this.problems);
  }
}

function typeCheckPort(t: TypeChecker, p: Obj, path: string): void {
  for (const f of ['containerPort', 'hostPort', 'servicePort', 'port', 'number']) t.check(p[f], 'number', `${path}/${f}`);
  t.check(p.name, 'string', `${path}/name`);
  if (p.labels !== undefined) t.stringMap(p.labels, `${path}/labels`);
}

function typeCheckApp(app: Obj): void {
  const t = new TypeChecker();
  t.check(app.id, 'string', '/id');
  t.check(app.cmd, 'string', '/cmd');
  t.arrayOf(app.args, 'string', '/args');
  for (const f of ['instances', 'cpus', 'mem', 'disk', 'gpus', 'backoffSeconds', 'backoffFactor', 'maxLaunchDelaySeconds']) t.check(app[f], 'number', `/${f}`);
  t.stringMap(app.labels, '/labels');
  t.env(app.env, '/env');
  t.arrayOf(app.constraints, 'array', '/constraints');
  t.arrayOf(app.healthChecks, 'object', '/healthChecks');
  t.arrayOf(app.fetch, 'object', '/fetch', (f, p) => t.check((f as Obj).uri, 'string', `${p}/uri`));
  t.arrayOf(app.dependencies, 'string', '/dependencies');
  t.arrayOf(app.ports, 'number', '/ports');
  t.arrayOf(app.portDefinitions, 'object', '/portDefinitions', (p, path) => typeCheckPort(t, p as Obj, path));
  t.arrayOf(app.networks, 'object', '/networks', (n, p) => t.check((n as Obj).mode, 'string', `${p}/mode`));
  t.check(app.secrets, 'object', '/secrets');
  t.check(app.ipAddress, 'object', '/ipAddress');
  if (t.check(app.container, 'object', '/container')) {
    const c = app.container as Obj;
    t.check(c.type, 'string', '/container/type');
    t.arrayOf(c.portMappings, 'object', '/container/portMappings', (p, path) => typeCheckPort(t, p as Obj, path));
    t.arrayOf(c.volumes, 'object', '/container/volumes', (v, p) => {
      t.check((v as Obj).containerPath, 'string', `${p}/containerPath`);
      t.check((v as Obj).mode, 'string', `${p}/mode`);
    });
    if (t.check(c.docker, 'object', '/container/docker')) {
      const d = c.docker as Obj;
      t.check(d.image, 'string', '/container/docker/image');
      t.check(d.network, 'string', '/container/docker/network');
      t.arrayOf(d.portMappings, 'object', '/container/docker/portMappings', (p, path) => typeCheckPort(t, p as Obj, path));
    }
  }
  t.throwIfAny();
}

// --- apps -------------------------------------------------------------------------------------

const LEGACY_NETWORK: Record<string, string> = { HOST: 'host', BRIDGE: 'container/bridge', USER: 'container' };
const NETWORK_MODES = new Set(['host', 'container', 'container/bridge']);

export interface NormalizeContext {
  now: string;
  /** hands out service ports for port 0 (Marathon: local_port_min 10000 upwards) */
  nextServicePort: () => number;
  /** the group a relative id is resolved against */
  base?: string;
}

/** Checks an app definition and returns it in Marathon's 1.5+ normal form; throws ApiError(422). */
export function normalizeApp(input: Json, ctx: NormalizeContext): Obj {
  if (!isObj(input)) throw invalidJson([{ path: '', errors: [EXPECTED.object] }]);
  typeCheckApp(input);
  const app: Obj = { ...input };
  const problems: Violation[] = [];
  if (typeof app.id !== 'string' || app.id.length === 0) {
    problems.push({ path: '/id', errors: ['error.path.missing'] });
  } else {
    const idErrors = pathIdErrors(resolveId(app.id, ctx.base), false);
    const rawSegments = app.id.split('/').filter((s) => s.length > 0);
    if (rawSegments.some((s) => !SEGMENT.test(s)) && idErrors.length === 0) idErrors.push('path contains invalid characters');
    if (idErrors.length) problems.push({ path: '/id', errors: idErrors });
    app.id = resolveId(app.id, ctx.base);
  }
  if (app.cmd === undefined && app.args === undefined && app.container === undefined) {
    problems.push({ path: '/', errors: ["AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."] });
  }
  if (app.cmd !== undefined && app.cmd !== null && app.args !== undefined && app.args !== null) {
    problems.push({ path: '/', errors: ["AppDefinition must either contain a 'cmd' or a 'args', but not both."] });
  }
  for (const f of ['instances', 'cpus', 'mem', 'disk', 'gpus']) {
    if (typeof app[f] === 'number' && (app[f] as number) < 0) problems.push({ path: `/${f}`, errors: ['got ' + String(app[f]) + ', expected 0 or more'] });
  }
  if (typeof app.instances === 'number' && !Number.isInteger(app.instances)) problems.push({ path: '/instances', errors: ['error.expected.int'] });

  // pre-1.5 networking -> networks + container.portMappings + portDefinitions
  const ipAddress = isObj(app.ipAddress) ? app.ipAddress : undefined;
  const discoveryPorts = Array.isArray((ipAddress?.discovery as Obj | undefined)?.ports);
  // Marathon moves legacy discovery ports into portMappings, giving a container-less app a Mesos container
  const container = isObj(app.container) ? ({ ...app.container } as Obj) : discoveryPorts ? ({ type: 'MESOS' } as Obj) : undefined;
  const docker = container && isObj(container.docker) ? ({ ...container.docker } as Obj) : undefined;
  if (container && docker) container.docker = docker;
  let networks: Obj[] | undefined = Array.isArray(app.networks) ? (app.networks as Obj[]).map((n) => ({ ...n })) : undefined;
  if (!networks || networks.length === 0) {
    if (ipAddress) {
      networks = [{ mode: 'container', ...(typeof ipAddress.networkName === 'string' ? { name: ipAddress.networkName } : {}) }];
    } else if (docker && typeof docker.network === 'string') {
      const mode = LEGACY_NETWORK[docker.network];
      if (!mode) problems.push({ path: '/container/docker/network', errors: [`unknown network ${docker.network}`] });
      networks = [{ mode: mode ?? 'host' }];
    } else {
      networks = [{ mode: 'host' }];
    }
  }
  networks.forEach((n, i) => {
    if (n.mode === undefined) n.mode = 'container';
    if (!NETWORK_MODES.has(String(n.mode))) problems.push({ path: `/networks(${i})/mode`, errors: ['error.unknown.enum.literal'] });
  });
  const modes = new Set(networks.map((n) => n.mode));
  if (modes.has('host') && networks.length > 1) problems.push({ path: '/networks', errors: ['host networking may not be combined with other networks'] });
  if (docker) {
    if (Array.isArray(docker.portMappings) && container && container.portMappings === undefined) container.portMappings = docker.portMappings;
    delete docker.network;
    delete docker.portMappings;
  }
  if (ipAddress && discoveryPorts && container && container.portMappings === undefined) {
    container.portMappings = ((ipAddress.discovery as Obj).ports as Obj[]).map((p) => ({ containerPort: p.number, name: p.name, protocol: p.protocol ?? 'tcp' }));
  }
  delete app.ipAddress;
  if (container) {
    const type = container.type ?? 'DOCKER';
    if (type !== 'DOCKER' && type !== 'MESOS') problems.push({ path: '/container/type', errors: ['error.unknown.enum.literal'] });
    container.type = type;
    if (type === 'DOCKER' && (!docker || typeof docker.image !== 'string' || docker.image.length === 0)) {
      problems.push({ path: '/container/docker/image', errors: ['must not be empty'] });
    }
    const volumes = Array.isArray(container.volumes) ? (container.volumes as Obj[]) : [];
    volumes.forEach((v, i) => {
      if (v.mode !== undefined && v.mode !== 'RO' && v.mode !== 'RW') problems.push({ path: `/container/volumes(${i})/mode`, errors: ['error.unknown.enum.literal'] });
      if (typeof v.containerPath !== 'string' || v.containerPath.length === 0) problems.push({ path: `/container/volumes(${i})/containerPath`, errors: ['must not be empty'] });
    });
    container.volumes = volumes;
    if (Array.isArray(container.portMappings)) {
      if (modes.has('host')) problems.push({ path: '/container/portMappings', errors: ['portMappings are not allowed with host networking'] });
      container.portMappings = (container.portMappings as Obj[]).map((p) => {
        const m: Obj = { containerPort: 0, protocol: 'tcp', ...p };
        // on a container network a mapping without hostPort gets no host port; on the bridge it defaults to 0 (any)
        if (m.hostPort === undefined || m.hostPort === null) {
          if (modes.has('container')) delete m.hostPort;
          else m.hostPort = 0;
        }
        if (!m.servicePort) m.servicePort = ctx.nextServicePort();
        return m;
      });
    }
    app.container = container;
  }
  if (Array.isArray(app.ports) && app.portDefinitions === undefined) {
    app.portDefinitions = (app.ports as number[]).map((port) => ({ port, protocol: 'tcp' }));
  }
  delete app.ports;
  if (app.portDefinitions === undefined) app.portDefinitions = modes.has('host') ? [{ port: 0, protocol: 'tcp', name: 'default' }] : [];
  if (Array.isArray(app.portDefinitions) && !modes.has('host') && (app.portDefinitions as Json[]).length > 0) {
    problems.push({ path: '/portDefinitions', errors: ['portDefinitions are only allowed with host networking'] });
  }
  app.portDefinitions = (app.portDefinitions as Obj[]).map((p) => ({ protocol: 'tcp', ...p, port: p.port ? p.port : ctx.nextServicePort() }));
  const names = (app.portDefinitions as Obj[]).map((p) => p.name).filter((n) => n !== undefined);
  if (new Set(names).size !== names.length) problems.push({ path: '/portDefinitions', errors: ['Port names must be unique.'] });
  if (problems.length) throw notValid(problems);

  app.networks = networks;
  // a fresh literal per call, so no value is shared between apps
  const defaults: Obj = {
    instances: 1, cpus: 1, mem: 128, disk: 0, gpus: 0, executor: '', constraints: [], labels: {}, env: {},
    backoffSeconds: 1, backoffFactor: 1.15, maxLaunchDelaySeconds: 300, requirePorts: false, healthChecks: [],
    readinessChecks: [], dependencies: [], fetch: [], killSelection: 'YOUNGEST_FIRST',
    upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 1 },
    unreachableStrategy: { inactiveAfterSeconds: 0, expungeAfterSeconds: 0 },
  };
  // one object built in one go (adding keys one by one to a big object is slow in V8)
  const out: Obj = { id: app.id, ...defaults, ...app };
  for (const k in defaults) if (out[k] === null) out[k] = defaults[k];
  return finishApp(out, ctx);
}

function finishApp(app: Obj, ctx: NormalizeContext): Obj {
  const versionInfo = isObj(app.versionInfo) ? app.versionInfo : undefined;
  if (typeof app.version !== 'string') app.version = typeof versionInfo?.lastConfigChangeAt === 'string' ? versionInfo.lastConfigChangeAt : ctx.now;
  if (!versionInfo) app.versionInfo = { lastScalingAt: app.version, lastConfigChangeAt: app.version };
  for (const f of ['tasks', 'tasksStaged', 'tasksRunning', 'tasksHealthy', 'tasksUnhealthy', 'deployments', 'lastTaskFailure', 'taskStats', 'readinessCheckResults']) delete app[f];
  return app;
}

/** Fields a client must not send back (API-NOTES: "must strip"); PUT with `version` and more -> 422. */
export function checkUpdateBody(body: Obj): void {
  if (typeof body.version === 'string' && Object.keys(body).some((k) => k !== 'version' && k !== 'id')) {
    throw notValid([{ path: '/', errors: ['The application can either be updated or rolled back to a version, not both.'] }]);
  }
}

// --- pods -------------------------------------------------------------------------------------

/** Checks a pod definition and returns it normalised; throws ApiError(422). */
export function normalizePod(input: Json, ctx: NormalizeContext): Obj {
  if (!isObj(input)) throw invalidJson([{ path: '', errors: [EXPECTED.object] }]);
  const t = new TypeChecker();
  t.check(input.id, 'string', '/id');
  t.stringMap(input.labels, '/labels');
  t.env(input.environment, '/environment');
  t.arrayOf(input.containers, 'object', '/containers', (c, p) => {
    const co = c as Obj;
    t.check(co.name, 'string', `${p}/name`);
    if (t.check(co.resources, 'object', `${p}/resources`)) {
      for (const f of ['cpus', 'mem', 'disk', 'gpus']) t.check((co.resources as Obj)[f], 'number', `${p}/resources/${f}`);
    }
    t.arrayOf(co.endpoints, 'object', `${p}/endpoints`, (e, ep) => {
      t.check((e as Obj).name, 'string', `${ep}/name`);
      t.check((e as Obj).containerPort, 'number', `${ep}/containerPort`);
      t.check((e as Obj).hostPort, 'number', `${ep}/hostPort`);
      t.arrayOf((e as Obj).protocol, 'string', `${ep}/protocol`);
    });
    t.arrayOf(co.volumeMounts, 'object', `${p}/volumeMounts`);
    t.check(co.image, 'object', `${p}/image`);
  });
  t.arrayOf(input.volumes, 'object', '/volumes', (v, p) => t.check((v as Obj).name, 'string', `${p}/name`));
  t.arrayOf(input.networks, 'object', '/networks');
  if (t.check(input.scaling, 'object', '/scaling')) t.check((input.scaling as Obj).instances, 'number', '/scaling/instances');
  t.throwIfAny();

  const pod: Obj = { ...input };
  const problems: Violation[] = [];
  if (typeof pod.id !== 'string' || pod.id.length === 0) problems.push({ path: '/id', errors: ['error.path.missing'] });
  else {
    pod.id = resolveId(pod.id, ctx.base);
    const errs = pathIdErrors(pod.id as string);
    if ((input.id as string).split('/').some((s) => s.length > 0 && !SEGMENT.test(s)) && errs.length === 0) errs.push('path contains invalid characters');
    if (errs.length) problems.push({ path: '/id', errors: errs });
  }
  const containers = Array.isArray(pod.containers) ? (pod.containers as Obj[]) : [];
  if (containers.length === 0) problems.push({ path: '/containers', errors: ['must not be empty'] });
  const seen = new Set<string>();
  const volumeNames = new Set((Array.isArray(pod.volumes) ? (pod.volumes as Obj[]) : []).map((v) => v.name as string));
  pod.containers = containers.map((c, i) => {
    const name = c.name as string | undefined;
    if (typeof name !== 'string' || name.length > 63 || !CONTAINER_NAME.test(name)) {
      problems.push({ path: `/containers(${i})/name`, errors: ["must fully match regular expression '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"] });
    } else if (seen.has(name)) {
      problems.push({ path: `/containers(${i})/name`, errors: ['container names are not unique'] });
    } else seen.add(name);
    if (!isObj(c.resources)) problems.push({ path: `/containers(${i})/resources`, errors: ['error.path.missing'] });
    const out: Obj = { ...c, resources: { cpus: 1, mem: 128, disk: 0, gpus: 0, ...(isObj(c.resources) ? c.resources : {}) } };
    if (isObj(c.image)) {
      const kind = String(c.image.kind ?? 'DOCKER').toUpperCase();
      if (kind !== 'DOCKER' && kind !== 'APPC') problems.push({ path: `/containers(${i})/image/kind`, errors: ['error.unknown.enum.literal'] });
      out.image = { ...c.image, kind };
    }
    (Array.isArray(c.volumeMounts) ? (c.volumeMounts as Obj[]) : []).forEach((m, j) => {
      if (!volumeNames.has(m.name as string)) problems.push({ path: `/containers(${i})/volumeMounts(${j})/name`, errors: ['volume mount name must refer to a defined volume'] });
    });
    if (Array.isArray(c.endpoints)) {
      out.endpoints = (c.endpoints as Obj[]).map((e) => {
        const ep: Obj = { ...e };
        if (ep.containerPort === null) delete ep.containerPort;
        if (ep.protocol === undefined) ep.protocol = ['tcp'];
        return ep;
      });
    }
    return out;
  });
  const networks = Array.isArray(pod.networks) && (pod.networks as Json[]).length > 0 ? (pod.networks as Obj[]).map((n) => ({ ...n })) : [{ mode: 'host' }];
  networks.forEach((n, i) => {
    if (n.mode === undefined) n.mode = 'container';
    if (n.name === null) delete n.name;
    if (!NETWORK_MODES.has(String(n.mode))) problems.push({ path: `/networks(${i})/mode`, errors: ['error.unknown.enum.literal'] });
  });
  pod.networks = networks;
  const scaling: Obj = { kind: 'fixed', instances: 1, ...(isObj(pod.scaling) ? pod.scaling : {}) };
  if (typeof scaling.instances !== 'number' || scaling.instances < 0 || !Number.isInteger(scaling.instances)) {
    problems.push({ path: '/scaling/instances', errors: ['got ' + String(scaling.instances) + ', expected 0 or more'] });
  }
  pod.scaling = scaling;
  if (problems.length) throw notValid(problems);
  if (pod.labels === undefined) pod.labels = {};
  if (pod.volumes === undefined) pod.volumes = [];
  if (typeof pod.version !== 'string') pod.version = ctx.now;
  return pod;
}
