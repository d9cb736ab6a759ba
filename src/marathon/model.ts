/**
 * Marathon's JSON as typed values, parsed at the boundary. Reads the 1.5+ networking fields
 * (`networks`, `container.portMappings`, `portDefinitions`) and the legacy ones (`ports`,
 * `ipAddress`, `container.docker.network`, `container.docker.portMappings`).
 * A parse failure names the JSON path in Marathon's notation (`/apps(3)/labels/owner`).
 */

export type NetworkMode = 'host' | 'container' | 'container/bridge';

export interface MarathonNetwork {
  mode: NetworkMode;
  name?: string;
}

/**
 * A port of an app (`portDefinitions`, `container.portMappings`, the legacy `ports`,
 * `container.docker.portMappings`, `ipAddress.discovery.ports`) or a pod container endpoint.
 */
export interface MarathonPort {
  name?: string;
  containerPort?: number;
  /** portMappings/endpoints: the host port (0 = Marathon picks one); portDefinitions and `ports`: the definition's `port` (the service port; the host port with requirePorts) */
  hostPort?: number;
  servicePort?: number;
  /** `tcp`, `udp`, `udp,tcp` (pod endpoints list theirs, joined here by commas) */
  protocol: string;
  labels?: Record<string, string>;
}

export interface MarathonIpAddress {
  ipAddress: string;
  /** `IPv4` or `IPv6` */
  protocol: string;
}

/** One health check's latest result for a task. */
export interface MarathonHealthCheckResult {
  alive: boolean;
  /** `instanceId` (1.4+) or `taskId` (before) */
  instanceId?: string;
}

export interface MarathonTask {
  id: string;
  appId: string;
  host: string;
  state: string;
  slaveId?: string;
  /** host ports, one per port definition or per port mapping that has a host port */
  ports: number[];
  ipAddresses: MarathonIpAddress[];
  /** one per health check of the app; empty: not checked yet (or the app has none) */
  healthCheckResults: MarathonHealthCheckResult[];
  version?: string;
}

export interface MarathonApp {
  id: string;
  labels: Record<string, string>;
  instances: number;
  networks: MarathonNetwork[];
  ports: MarathonPort[];
  /** the definition has `healthChecks`: its tasks are healthy only when every result is alive */
  hasHealthChecks: boolean;
  version?: string;
  tasks: MarathonTask[];
}

/** A network a pod instance is attached to, with the addresses Mesos reported on it. */
export interface MarathonInstanceNetwork {
  name?: string;
  addresses: string[];
}

/** A pod container's status in a pod instance; its endpoints carry the host port Marathon allocated (absent without a host port). */
export interface MarathonContainerStatus {
  name: string;
  status?: string;
  endpoints: Array<{ name: string; allocatedHostPort?: number }>;
}

export interface MarathonPodInstance {
  id: string;
  /** PENDING, STAGING, STABLE, DEGRADED (running, a container unhealthy or unreachable), TERMINAL */
  status: string;
  agentHostname: string;
  agentId?: string;
  networks: MarathonInstanceNetwork[];
  containers: MarathonContainerStatus[];
}

export interface MarathonPod {
  id: string;
  labels: Record<string, string>;
  instances: number;
  networks: MarathonNetwork[];
  containers: Array<{ name: string; endpoints: MarathonPort[] }>;
  version?: string;
  /** from a PodStatus; empty when parsed from a bare definition */
  podInstances: MarathonPodInstance[];
}

export interface MarathonGroup {
  id: string;
  apps: MarathonApp[];
  pods: MarathonPod[];
  groups: MarathonGroup[];
  version?: string;
}

/** A part of a payload that could not be parsed; `path` is where, `reason` is what. */
export interface Malformed {
  kind: 'app' | 'pod' | 'group' | 'task';
  path: string;
  id?: string;
  reason: string;
}

export class MarathonParseError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`${path || '/'}: ${reason}`);
    this.name = 'MarathonParseError';
  }
}

/** Mesos task states after which a task never runs again. */
const TERMINAL_TASK_STATES = new Set([
  'TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_LOST', 'TASK_ERROR', 'TASK_DROPPED', 'TASK_GONE',
  'TASK_GONE_BY_OPERATOR',
]);

export function isTerminalState(state: string): boolean {
  return TERMINAL_TASK_STATES.has(state) || state === 'TERMINAL';
}

type Json = unknown;
type Obj = Record<string, Json>;

const isObj = (v: Json): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function obj(v: Json, path: string): Obj {
  if (!isObj(v)) throw new MarathonParseError(path, 'expected an object');
  return v;
}
function optObj(v: Json, path: string): Obj | undefined {
  return v === undefined || v === null ? undefined : obj(v, path);
}
function str(v: Json, path: string): string {
  if (typeof v !== 'string') throw new MarathonParseError(path, 'expected a string');
  return v;
}
function optStr(v: Json, path: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, path);
}
function optNum(v: Json, path: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new MarathonParseError(path, 'expected a number');
  return v;
}
function arr(v: Json, path: string): Json[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new MarathonParseError(path, 'expected an array');
  return v;
}
function absoluteId(v: Json, path: string): string {
  const id = str(v, path);
  if (id.length === 0) throw new MarathonParseError(path, 'empty id');
  return id.startsWith('/') ? id : `/${id}`;
}
function labels(v: Json, path: string): Record<string, string> {
  const o = optObj(v, path);
  if (!o) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(o)) out[k] = str(val, `${path}/${k}`);
  return out;
}

function networkMode(v: Json, path: string): NetworkMode {
  const m = str(v, path);
  if (m !== 'host' && m !== 'container' && m !== 'container/bridge') {
    throw new MarathonParseError(path, `unknown network mode "${m}" (host, container, container/bridge)`);
  }
  return m;
}

function portOf(v: Json, path: string, kind: 'definition' | 'mapping' | 'endpoint' | 'discovery'): MarathonPort {
  const o = obj(v, path);
  const port: MarathonPort = { protocol: 'tcp' };
  const name = optStr(o.name, `${path}/name`);
  if (name !== undefined) port.name = name;
  if (kind === 'definition') {
    port.hostPort = optNum(o.port, `${path}/port`);
  } else if (kind === 'discovery') {
    port.containerPort = optNum(o.number, `${path}/number`);
  } else {
    port.containerPort = optNum(o.containerPort, `${path}/containerPort`);
    port.hostPort = optNum(o.hostPort, `${path}/hostPort`);
  }
  const servicePort = optNum(o.servicePort, `${path}/servicePort`);
  if (servicePort !== undefined) port.servicePort = servicePort;
  const protocol = o.protocol;
  if (Array.isArray(protocol)) port.protocol = protocol.map((p, i) => str(p, `${path}/protocol(${i})`)).join(',');
  else if (protocol !== undefined && protocol !== null) port.protocol = str(protocol, `${path}/protocol`);
  const portLabels = labels(o.labels, `${path}/labels`);
  if (Object.keys(portLabels).length > 0) port.labels = portLabels;
  for (const k of Object.keys(port) as Array<keyof MarathonPort>) if (port[k] === undefined) delete port[k];
  return port;
}

const LEGACY_DOCKER_NETWORK: Record<string, NetworkMode> = { HOST: 'host', BRIDGE: 'container/bridge', USER: 'container', NONE: 'container' };

/** Parses an AppInfo (or an app definition); `path` locates it in the enclosing payload. */
export function parseApp(v: Json, path = ''): MarathonApp {
  const o = obj(v, path || '/');
  const id = absoluteId(o.id, `${path}/id`);
  const container = optObj(o.container, `${path}/container`);
  const docker = container ? optObj(container.docker, `${path}/container/docker`) : undefined;
  const ipAddress = optObj(o.ipAddress, `${path}/ipAddress`);

  let networks: MarathonNetwork[] = arr(o.networks, `${path}/networks`).map((n, i) => {
    const p = `${path}/networks(${i})`;
    const no = obj(n, p);
    const net: MarathonNetwork = { mode: no.mode === undefined ? 'container' : networkMode(no.mode, `${p}/mode`) };
    const name = optStr(no.name, `${p}/name`);
    if (name !== undefined) net.name = name;
    return net;
  });
  if (networks.length === 0) {
    // pre-1.5: docker.network or ipAddress (IP-per-task) decide the mode
    const legacy = optStr(docker?.network, `${path}/container/docker/network`);
    if (ipAddress) {
      const name = optStr(ipAddress.networkName, `${path}/ipAddress/networkName`);
      networks = [name !== undefined ? { mode: 'container', name } : { mode: 'container' }];
    } else if (legacy !== undefined) {
      const mode = Object.hasOwn(LEGACY_DOCKER_NETWORK, legacy) ? LEGACY_DOCKER_NETWORK[legacy] : undefined; // not "__proto__"'s
      if (!mode) throw new MarathonParseError(`${path}/container/docker/network`, `unknown docker network "${legacy}"`);
      networks = [{ mode }];
    } else {
      networks = [{ mode: 'host' }];
    }
  }

  let ports: MarathonPort[];
  if (container && container.portMappings !== undefined && container.portMappings !== null) {
    ports = arr(container.portMappings, `${path}/container/portMappings`).map((p, i) => portOf(p, `${path}/container/portMappings(${i})`, 'mapping'));
  } else if (docker && docker.portMappings !== undefined && docker.portMappings !== null) {
    ports = arr(docker.portMappings, `${path}/container/docker/portMappings`).map((p, i) => portOf(p, `${path}/container/docker/portMappings(${i})`, 'mapping'));
  } else if (o.portDefinitions !== undefined && o.portDefinitions !== null) {
    ports = arr(o.portDefinitions, `${path}/portDefinitions`).map((p, i) => portOf(p, `${path}/portDefinitions(${i})`, 'definition'));
  } else if (o.ports !== undefined && o.ports !== null) {
    ports = arr(o.ports, `${path}/ports`).map((p, i) => {
      const n = optNum(p, `${path}/ports(${i})`);
      return n === undefined ? { protocol: 'tcp' } : { hostPort: n, protocol: 'tcp' };
    });
  } else if (ipAddress?.discovery !== undefined) {
    const disc = obj(ipAddress.discovery, `${path}/ipAddress/discovery`);
    ports = arr(disc.ports, `${path}/ipAddress/discovery/ports`).map((p, i) => portOf(p, `${path}/ipAddress/discovery/ports(${i})`, 'discovery'));
  } else {
    ports = [];
  }

  const instances = optNum(o.instances, `${path}/instances`) ?? 1;
  const app: MarathonApp = {
    id,
    labels: labels(o.labels, `${path}/labels`),
    instances,
    networks,
    ports,
    hasHealthChecks: arr(o.healthChecks, `${path}/healthChecks`).length > 0,
    tasks: arr(o.tasks, `${path}/tasks`).map((t, i) => parseTask(t, `${path}/tasks(${i})`, id)),
  };
  const version = optStr(o.version, `${path}/version`);
  if (version !== undefined) app.version = version;
  return app;
}

/** Parses a Task; `appId` fills in a missing appId when the task sits inside its app. */
export function parseTask(v: Json, path = '', appId?: string): MarathonTask {
  const o = obj(v, path || '/');
  const task: MarathonTask = {
    id: str(o.id, `${path}/id`),
    appId: o.appId === undefined && appId ? appId : absoluteId(o.appId, `${path}/appId`),
    host: str(o.host, `${path}/host`),
    state: optStr(o.state, `${path}/state`) ?? optStr(o.taskStatus, `${path}/taskStatus`) ?? 'TASK_RUNNING',
    ports: arr(o.ports, `${path}/ports`).map((p, i) => optNum(p, `${path}/ports(${i})`) ?? 0),
    ipAddresses: arr(o.ipAddresses, `${path}/ipAddresses`).map((a, i) => {
      const ao = obj(a, `${path}/ipAddresses(${i})`);
      return { ipAddress: str(ao.ipAddress, `${path}/ipAddresses(${i})/ipAddress`), protocol: optStr(ao.protocol, `${path}/ipAddresses(${i})/protocol`) ?? 'IPv4' };
    }),
    healthCheckResults: arr(o.healthCheckResults, `${path}/healthCheckResults`).map((r, i) => healthCheckResult(r, `${path}/healthCheckResults(${i})`)),
  };
  const slaveId = optStr(o.slaveId, `${path}/slaveId`);
  if (slaveId !== undefined) task.slaveId = slaveId;
  const version = optStr(o.version, `${path}/version`);
  if (version !== undefined) task.version = version;
  return task;
}

function healthCheckResult(v: Json, path: string): MarathonHealthCheckResult {
  const o = obj(v, path);
  if (typeof o.alive !== 'boolean') throw new MarathonParseError(`${path}/alive`, 'expected a boolean');
  const result: MarathonHealthCheckResult = { alive: o.alive };
  // 1.4 renamed taskId to instanceId
  const instanceId = optStr(o.instanceId, `${path}/instanceId`) ?? optStr(o.taskId, `${path}/taskId`);
  if (instanceId !== undefined) result.instanceId = instanceId;
  return result;
}

function podInstance(v: Json, path: string): MarathonPodInstance {
  const o = obj(v, path);
  const inst: MarathonPodInstance = {
    id: str(o.id, `${path}/id`),
    status: optStr(o.status, `${path}/status`) ?? 'PENDING',
    agentHostname: str(o.agentHostname, `${path}/agentHostname`),
    networks: arr(o.networks, `${path}/networks`).map((n, i) => {
      const np = `${path}/networks(${i})`;
      const no = obj(n, np);
      const net: MarathonInstanceNetwork = { addresses: arr(no.addresses, `${np}/addresses`).map((a, j) => str(a, `${np}/addresses(${j})`)) };
      const name = optStr(no.name, `${np}/name`);
      if (name !== undefined && name.length > 0) net.name = name;
      return net;
    }),
    containers: arr(o.containers, `${path}/containers`).map((c, i) => {
      const cp = `${path}/containers(${i})`;
      const co = obj(c, cp);
      const container: MarathonContainerStatus = {
        name: str(co.name, `${cp}/name`),
        endpoints: arr(co.endpoints, `${cp}/endpoints`).map((e, j) => {
          const ep = `${cp}/endpoints(${j})`;
          const eo = obj(e, ep);
          const endpoint: MarathonContainerStatus['endpoints'][number] = { name: str(eo.name, `${ep}/name`) };
          const allocated = optNum(eo.allocatedHostPort, `${ep}/allocatedHostPort`);
          if (allocated !== undefined) endpoint.allocatedHostPort = allocated;
          return endpoint;
        }),
      };
      const status = optStr(co.status, `${cp}/status`);
      if (status !== undefined) container.status = status;
      return container;
    }),
  };
  const agentId = optStr(o.agentId, `${path}/agentId`);
  if (agentId !== undefined) inst.agentId = agentId;
  return inst;
}

/** Parses a Pod definition or a PodStatus (`{id, spec, status, instances}`). */
export function parsePod(v: Json, path = ''): MarathonPod {
  const o = obj(v, path || '/');
  const isStatus = isObj(o.spec);
  const spec = isStatus ? (o.spec as Obj) : o;
  const sp = isStatus ? `${path}/spec` : path;
  const id = absoluteId(isStatus && o.id !== undefined ? o.id : spec.id, isStatus && o.id !== undefined ? `${path}/id` : `${sp}/id`);
  const scaling = optObj(spec.scaling, `${sp}/scaling`);
  const containers = arr(spec.containers, `${sp}/containers`).map((c, i) => {
    const cp = `${sp}/containers(${i})`;
    const co = obj(c, cp);
    return {
      name: str(co.name, `${cp}/name`),
      endpoints: arr(co.endpoints, `${cp}/endpoints`).map((e, j) => portOf(e, `${cp}/endpoints(${j})`, 'endpoint')),
    };
  });
  const pod: MarathonPod = {
    id,
    labels: labels(spec.labels, `${sp}/labels`),
    instances: optNum(scaling?.instances, `${sp}/scaling/instances`) ?? 1,
    networks: arr(spec.networks, `${sp}/networks`).map((n, i) => {
      const no = obj(n, `${sp}/networks(${i})`);
      const net: MarathonNetwork = { mode: no.mode === undefined ? 'container' : networkMode(no.mode, `${sp}/networks(${i})/mode`) };
      const name = optStr(no.name, `${sp}/networks(${i})/name`);
      if (name !== undefined) net.name = name;
      return net;
    }),
    containers,
    podInstances: isStatus ? arr(o.instances, `${path}/instances`).map((inst, i) => podInstance(inst, `${path}/instances(${i})`)) : [],
  };
  if (pod.networks.length === 0) pod.networks = [{ mode: 'host' }];
  const version = optStr(spec.version, `${sp}/version`);
  if (version !== undefined) pod.version = version;
  return pod;
}

/** Parses each element of a list, skipping (and reporting) the malformed ones. */
export function parseEach<T>(
  items: Json[],
  kind: 'app' | 'pod',
  parse: (v: Json, path: string) => T,
  pathOf: (i: number) => string,
  malformed: Malformed[],
): T[] {
  const out: T[] = [];
  for (let i = 0; i < items.length; i++) {
    try {
      out.push(parse(items[i], pathOf(i)));
    } catch (err) {
      if (!(err instanceof MarathonParseError)) throw err;
      const item = items[i];
      const id = isObj(item) && typeof item.id === 'string' ? item.id : undefined;
      malformed.push({ kind, path: err.path, ...(id !== undefined ? { id } : {}), reason: err.reason });
    }
  }
  return out;
}

/** `{"apps":[AppInfo]}` (GET /v2/apps). A malformed app is reported and left out, never fatal. */
export function parseAppList(v: Json, malformed: Malformed[]): MarathonApp[] {
  const o = obj(v, '/');
  if (!Array.isArray(o.apps)) throw new MarathonParseError('/apps', 'expected an array');
  return parseEach(o.apps, 'app', parseApp, (i) => `/apps(${i})`, malformed);
}

/** `[PodStatus]` (GET /v2/pods/::status) or `[Pod]` (GET /v2/pods). */
export function parsePodList(v: Json, malformed: Malformed[]): MarathonPod[] {
  if (!Array.isArray(v)) throw new MarathonParseError('/', 'expected an array of pods');
  return parseEach(v, 'pod', parsePod, (i) => `(${i})`, malformed);
}

/** `{"tasks":[Task]}` (GET /v2/tasks, /v2/apps/{id}/tasks). */
export function parseTaskList(v: Json, malformed: Malformed[]): MarathonTask[] {
  const o = obj(v, '/');
  const out: MarathonTask[] = [];
  arr(o.tasks, '/tasks').forEach((t, i) => {
    try {
      out.push(parseTask(t, `/tasks(${i})`));
    } catch (err) {
      if (!(err instanceof MarathonParseError)) throw err;
      malformed.push({ kind: 'task', path: err.path, reason: err.reason });
    }
  });
  return out;
}

/** A group (GET /v2/groups), recursively; malformed apps and pods are reported and left out. */
export function parseGroup(v: Json, malformed: Malformed[], path = ''): MarathonGroup {
  const o = obj(v, path || '/');
  const group: MarathonGroup = {
    id: absoluteId(o.id ?? '/', `${path}/id`),
    apps: parseEach(arr(o.apps, `${path}/apps`), 'app', parseApp, (i) => `${path}/apps(${i})`, malformed),
    pods: parseEach(arr(o.pods, `${path}/pods`), 'pod', parsePod, (i) => `${path}/pods(${i})`, malformed),
    groups: arr(o.groups, `${path}/groups`).map((g, i) => parseGroup(g, malformed, `${path}/groups(${i})`)),
  };
  const version = optStr(o.version, `${path}/version`);
  if (version !== undefined) group.version = version;
  return group;
}

/** Every app and pod of a group tree, flattened. */
export function flattenGroup(g: MarathonGroup, apps: MarathonApp[] = [], pods: MarathonPod[] = []): { apps: MarathonApp[]; pods: MarathonPod[] } {
  apps.push(...g.apps);
  pods.push(...g.pods);
  for (const sub of g.groups) flattenGroup(sub, apps, pods);
  return { apps, pods };
}

// --- event bus payloads -------------------------------------------------------------------------

/**
 * The events the client acts on, as typed values (API-NOTES.md "Event bus"). Each names what may
 * have changed; the client re-reads it (ordering is not guaranteed, so events are invalidation).
 */
export type MarathonEvent =
  | { type: 'api_post_event'; appId?: string; uri?: string }
  | { type: 'pod_created_event' | 'pod_updated_event' | 'pod_deleted_event'; podId?: string }
  | { type: 'group_change_success'; groupId?: string }
  | { type: 'deployment_success' | 'deployment_failed'; apps: string[]; pods: string[] }
  | { type: 'status_update_event'; appId?: string; taskId?: string; taskStatus?: string; host?: string }
  | { type: 'instance_changed_event'; runSpecId?: string; instanceId?: string; condition?: string }
  | { type: 'app_terminated_event'; appId?: string }
  | { type: 'health_status_changed_event'; appId?: string; instanceId?: string; alive?: boolean };

export type MarathonEventType = MarathonEvent['type'];

export const MARATHON_EVENT_TYPES: ReadonlySet<string> = new Set<MarathonEventType>([
  'api_post_event', 'pod_created_event', 'pod_updated_event', 'pod_deleted_event', 'group_change_success',
  'deployment_success', 'deployment_failed', 'status_update_event', 'instance_changed_event', 'app_terminated_event',
  'health_status_changed_event',
]);

/** An id field: a non-empty string made absolute, or undefined. */
function optId(v: Json): string | undefined {
  if (typeof v !== 'string' || v.length === 0) return undefined;
  return v.startsWith('/') ? v : `/${v}`;
}
const optText = (v: Json): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** `/v2/pods/<id>[::status][/]` (possibly behind a prefix such as /service/marathon) -> `<id>`. */
function podIdOfUri(uri: string | undefined): string | undefined {
  if (uri === undefined) return undefined;
  const at = uri.indexOf('/v2/pods');
  let id = at < 0 ? uri : uri.slice(at + '/v2/pods'.length);
  const colons = id.indexOf('::'); // with indexOf, not a regex: a hostile URI of many '::' would make /::.*$/ quadratic
  if (colons >= 0) id = id.slice(0, colons);
  return id.endsWith('/') ? id.slice(0, -1) : id;
}

/**
 * Parses the JSON `data` of an event of a type the client acts on; undefined for other types.
 * Marathon's payloads vary by version, so a missing or odd field is left undefined rather than
 * refused; a `data` that is not a JSON object is a MarathonParseError.
 */
export function parseMarathonEvent(type: string, data: Json): MarathonEvent | undefined {
  if (!MARATHON_EVENT_TYPES.has(type)) return undefined;
  const o = obj(data, '/');
  switch (type as MarathonEventType) {
    case 'api_post_event': {
      const def = isObj(o.appDefinition) ? o.appDefinition : undefined;
      return { type: 'api_post_event', appId: optId(def?.id), uri: optText(o.uri) };
    }
    case 'pod_created_event':
    case 'pod_updated_event':
    case 'pod_deleted_event': {
      // No pod id field: the id is in the URI (`/v2/pods/<id>`, possibly `::status` or a trailing slash).
      return { type: type as 'pod_created_event', podId: optId(podIdOfUri(optText(o.uri))) };
    }
    case 'group_change_success':
      return { type: 'group_change_success', groupId: optId(o.groupId) };
    case 'deployment_success':
    case 'deployment_failed': {
      const apps: string[] = [];
      const pods: string[] = [];
      const plan = isObj(o.plan) ? o.plan : undefined;
      for (const step of Array.isArray(plan?.steps) ? plan.steps : []) {
        for (const action of isObj(step) && Array.isArray(step.actions) ? step.actions : []) {
          if (!isObj(action)) continue;
          const app = optId(action.app);
          const pod = optId(action.pod);
          if (app) apps.push(app);
          if (pod) pods.push(pod);
        }
      }
      return { type: type as 'deployment_success', apps, pods };
    }
    case 'status_update_event':
      return { type: 'status_update_event', appId: optId(o.appId), taskId: optText(o.taskId), taskStatus: optText(o.taskStatus), host: optText(o.host) };
    case 'instance_changed_event':
      return { type: 'instance_changed_event', runSpecId: optId(o.runSpecId), instanceId: optText(o.instanceId), condition: optText(o.condition) };
    case 'app_terminated_event':
      return { type: 'app_terminated_event', appId: optId(o.appId) };
    case 'health_status_changed_event':
      return { type: 'health_status_changed_event', appId: optId(o.appId), instanceId: optText(o.instanceId), alive: typeof o.alive === 'boolean' ? o.alive : undefined };
  }
}
