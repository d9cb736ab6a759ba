import { MarathonParseError } from '../marathon/model';
import { LABEL } from '../mesh/bootstrap/contract';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';
import { isEmpty, JsonReader } from './json-reader';
import { isMarathonName } from './pod';

/**
 * A Marathon app as the equivalent pod (an app has one container; a sidecar needs a pod). What
 * a pod cannot hold is named in `notCarried` (a JSON path and why); what a pod holds with a
 * different meaning is named in `changed`.
 */
export interface AppConversion {
  pod: JsonObject;
  notCarried: string[];
  changed: string[];
}

/** Fields Marathon adds to an app it returns; a definition sent back leaves them out (API-NOTES.md). */
const SERVER_FIELDS = [
  'version', 'versionInfo', 'tasks', 'tasksStaged', 'tasksRunning', 'tasksHealthy', 'tasksUnhealthy', 'deployments',
  'lastTaskFailure', 'taskStats', 'readinessCheckResults',
];

const LEGACY_DOCKER_NETWORK: Record<string, string> = { HOST: 'host', BRIDGE: 'container/bridge', USER: 'container', NONE: 'container' };

interface Endpoint {
  name: string;
  /** the app named the port (only named ports have $PORT_<NAME>) */
  named: boolean;
  containerPort?: number;
  hostPort?: number;
  json: JsonObject;
}

/** A Marathon name (container, volume, endpoint) from free text: lowercase, dashes, at most 63. */
function toName(text: string, fallback: string): string {
  const s = text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return isMarathonName(s) ? s : fallback;
}

function uniqueName(wanted: string, taken: Set<string>): string {
  let name = wanted;
  for (let i = 2; taken.has(name); i++) name = `${wanted.slice(0, 60)}-${i}`;
  taken.add(name);
  return name;
}

/**
 * Converts an app definition. `reserved` are container names the sidecar template uses; the
 * app's container is named after the last segment of its id unless that clashes.
 */
export function convertAppToPod(app: JsonObject, path: string, reserved: ReadonlySet<string>): AppConversion {
  const r = new JsonReader(app, path);
  const notCarried: string[] = [];
  const changed: string[] = [];
  const drop = (reader: JsonReader, key: string, why: string) => {
    if (!isEmpty(reader.raw(key))) notCarried.push(`${reader.at(key)} (${why})`);
  };
  r.consume(...SERVER_FIELDS);

  const id = r.str('id');
  if (!r.has('cmd') && !r.has('args') && !r.has('container')) r.fail('', "an app needs 'cmd', 'args' or 'container' (Marathon refuses it without)");
  const labels = r.stringMap('labels');
  const container: JsonObject = {};
  const pod: JsonObject = { id, labels };

  // --- the container: name, resources, image, command ---------------------------------------
  const lastSegment = id.split('/').filter((s) => s.length > 0).pop() ?? 'app';
  container.name = uniqueName(toName(lastSegment, 'app'), new Set(reserved));
  const resources: JsonObject = { cpus: r.optNum('cpus') ?? 1, mem: r.optNum('mem') ?? 128, disk: r.optNum('disk') ?? 0 };
  const gpus = r.optNum('gpus');
  if (gpus !== undefined && gpus > 0) resources.gpus = gpus;
  container.resources = resources;

  const c = r.optObj('container');
  const docker = c?.optObj('docker');
  const type = c?.optStr('type') ?? (docker ? 'DOCKER' : 'MESOS');
  if (type !== 'DOCKER' && type !== 'MESOS') c!.fail('type', `"${type}" is neither DOCKER nor MESOS`);
  if (type === 'DOCKER') changed.push(`${c!.at('type')}: DOCKER; a pod runs the image with the Mesos containerizer`);
  if (docker) {
    const image: JsonObject = { kind: 'DOCKER', id: docker.str('image') };
    const forcePull = docker.optBool('forcePullImage') ?? docker.optBool('forcePull');
    if (forcePull !== undefined) image.forcePull = forcePull;
    const pullConfig = docker.raw('pullConfig');
    if (pullConfig !== undefined) image.pullConfig = pullConfig;
    container.image = image;
    docker.consume('network', 'portMappings');
    drop(docker, 'privileged', 'a pod container cannot be privileged');
    drop(docker, 'parameters', 'the Mesos containerizer takes no Docker parameters');
    drop(docker, 'credential', 'pods take a pullConfig secret instead');
  }
  const appc = c?.optObj('appc');
  if (appc) {
    const image: JsonObject = { kind: 'APPC', id: appc.str('image') };
    const imageLabels = appc.stringMap('labels');
    if (Object.keys(imageLabels).length > 0) image.labels = imageLabels;
    const forcePull = appc.optBool('forcePull');
    if (forcePull !== undefined) image.forcePull = forcePull;
    container.image = image;
  }

  const cmd = r.optStr('cmd');
  const args = r.strings('args');
  if (cmd !== undefined && args.length > 0) r.fail('', "an app has either 'cmd' or 'args', not both");
  // argv without overrideEntrypoint goes to the image's entrypoint, as an app's args do
  if (cmd !== undefined) container.exec = { command: { shell: cmd } };
  else if (args.length > 0) container.exec = { command: { argv: args } };

  // --- networks and ports ---------------------------------------------------------------------
  const ipAddress = r.optObj('ipAddress');
  const networks = readNetworks(r, docker, ipAddress, notCarried);
  const hostNetwork = networks.some((n) => n.mode === 'host');
  const endpoints = hostNetwork ? hostEndpoints(r, notCarried) : containerEndpoints(c, docker, ipAddress, notCarried);
  r.consume('portDefinitions', 'ports', 'requirePorts');
  if (!hostNetwork && (r.has('portDefinitions') || r.has('ports'))) {
    const defs = r.json.portDefinitions;
    if (Array.isArray(defs) ? defs.length > 0 : r.has('ports')) notCarried.push(`${r.at('portDefinitions')} (only host networking has port definitions)`);
  }
  if (endpoints.length > 0) container.endpoints = endpoints.map((e) => e.json);

  // --- volumes ------------------------------------------------------------------------------
  const podVolumes: JsonObject[] = [];
  const mounts: JsonObject[] = [];
  const volumeNames = new Set<string>();
  (c?.objects('volumes') ?? []).forEach((v, i) => {
    const containerPath = v.str('containerPath');
    const mode = v.optStr('mode') ?? 'RW';
    if (mode !== 'RO' && mode !== 'RW') v.fail('mode', `"${mode}" is neither RO nor RW`);
    const name = uniqueName(toName(containerPath, `volume-${i}`), volumeNames);
    const volume: JsonObject = { name };
    const hostPath = v.optStr('hostPath');
    const persistent = v.raw('persistent');
    const secret = v.optStr('secret');
    if (v.has('external')) {
      drop(v, 'external', 'pods take no external volumes');
      volumeNames.delete(name);
      return;
    }
    if (hostPath !== undefined) {
      volume.host = hostPath;
      if (!hostPath.startsWith('/')) changed.push(`${v.at('hostPath')}: "${hostPath}" is now relative to the pod executor's sandbox`);
    } else if (persistent !== undefined) {
      volume.persistent = persistent;
    } else if (secret !== undefined) {
      volume.secret = secret;
    }
    podVolumes.push(volume);
    mounts.push({ name, mountPath: containerPath, readOnly: mode === 'RO' });
  });
  if (mounts.length > 0) container.volumeMounts = mounts;

  // --- the rest of the container --------------------------------------------------------------
  const artifacts: JsonObject[] = r.objects('fetch').map((f) => {
    const a: JsonObject = { uri: f.str('uri') };
    for (const k of ['extract', 'executable', 'cache']) {
      const b = f.optBool(k);
      if (b !== undefined) a[k] = b;
    }
    const destPath = f.optStr('destPath');
    if (destPath !== undefined) a.destPath = destPath;
    return a;
  });
  // pre-1.5 `uris`
  for (const uri of r.strings('uris')) artifacts.push({ uri });
  if (artifacts.length > 0) container.artifacts = artifacts;

  const healthCheck = convertHealthChecks(r, endpoints, hostNetwork, notCarried, changed);
  if (healthCheck) container.healthCheck = healthCheck;
  drop(r, 'readinessChecks', 'pods have no readiness checks');

  const killGrace = r.optNum('taskKillGracePeriodSeconds');
  if (killGrace !== undefined) container.lifecycle = { killGracePeriodSeconds: killGrace };

  // --- the pod --------------------------------------------------------------------------------
  const user = r.optStr('user');
  if (user !== undefined) pod.user = user;
  const environment = convertEnv(r);
  const portEnv = portEnvironment(endpoints, hostNetwork, environment);
  if (portEnv.length > 0) changed.push(`${portEnv.join(', ')}: set in the pod's environment to the container ports (pods set ENDPOINT_<NAME> instead)`);
  if (Object.keys(environment).length > 0) pod.environment = environment;
  const secrets = r.optObj('secrets');
  if (secrets) {
    secrets.consume(...Object.keys(secrets.json));
    pod.secrets = secrets.json;
  }
  pod.containers = [container];
  if (podVolumes.length > 0) pod.volumes = podVolumes;
  pod.networks = networks.map((n) => n.json);
  pod.scaling = { kind: 'fixed', instances: r.optInt('instances') ?? 1 };
  const scheduling = convertScheduling(r);
  if (Object.keys(scheduling).length > 0) pod.scheduling = scheduling;
  const role = r.optStr('role');
  if (role !== undefined) pod.role = role;

  drop(r, 'dependencies', 'pods take no dependencies; put them on the group');
  drop(r, 'residency', 'pods have no residency; persistent volumes keep them on their agent');
  drop(r, 'executor', 'pods run under the default executor');
  for (const left of r.leftovers()) notCarried.push(`${left} (no pod equivalent)`);

  labels[LABEL.convertedFromApp] = JSON.stringify({ notCarried: notCarried.map((n) => n.split(' ')[0]) });
  return { pod, notCarried, changed };
}

interface Network {
  mode: string;
  json: JsonObject;
}

function readNetworks(r: JsonReader, docker: JsonReader | undefined, ipAddress: JsonReader | undefined, notCarried: string[]): Network[] {
  const written = r.objects('networks').map((n) => {
    const mode = n.optStr('mode') ?? 'container';
    if (!['host', 'container', 'container/bridge'].includes(mode)) n.fail('mode', `"${mode}" is not host, container or container/bridge`);
    const json: JsonObject = { mode };
    const name = n.optStr('name');
    if (name !== undefined) json.name = name;
    const labels = n.stringMap('labels');
    if (Object.keys(labels).length > 0) json.labels = labels;
    return { mode, json };
  });
  if (written.length > 0) return written;
  if (ipAddress) {
    // pre-1.5 IP-per-task
    const json: JsonObject = { mode: 'container' };
    const name = ipAddress.optStr('networkName');
    if (name !== undefined) json.name = name;
    const labels = ipAddress.stringMap('labels');
    if (Object.keys(labels).length > 0) json.labels = labels;
    const groups = ipAddress.raw('groups');
    if (Array.isArray(groups) && groups.length > 0) notCarried.push(`${ipAddress.at('groups')} (ignored by Marathon)`);
    ipAddress.consume('discovery');
    return [{ mode: 'container', json }];
  }
  const legacy = docker?.json.network;
  if (typeof legacy === 'string') {
    const mode = LEGACY_DOCKER_NETWORK[legacy];
    if (!mode) docker!.fail('network', `"${legacy}" is not HOST, BRIDGE, USER or NONE`);
    return [{ mode, json: { mode } }];
  }
  return [{ mode: 'host', json: { mode: 'host' } }];
}

function protocolsOf(reader: JsonReader, key: string): string[] {
  const p = reader.optStr(key) ?? 'tcp';
  return p.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
}

/** portMappings (1.5+ or Docker's) or ipAddress.discovery ports as endpoints. */
function containerEndpoints(c: JsonReader | undefined, docker: JsonReader | undefined, ipAddress: JsonReader | undefined, notCarried: string[]): Endpoint[] {
  const taken = new Set<string>();
  const fromMappings = (mappings: JsonReader[]) =>
    mappings.map((m, i) => {
      const json: JsonObject = { name: uniqueName(toName(m.optStr('name') ?? `port${i}`, `port${i}`), taken) };
      const containerPort = m.optInt('containerPort');
      const hostPort = m.optInt('hostPort');
      if (containerPort !== undefined) json.containerPort = containerPort;
      if (hostPort !== undefined) json.hostPort = hostPort;
      json.protocol = protocolsOf(m, 'protocol');
      const labels = m.stringMap('labels');
      if (Object.keys(labels).length > 0) json.labels = labels;
      const networkNames = m.strings('networkNames');
      if (networkNames.length > 0) json.networkNames = networkNames;
      const servicePort = m.optInt('servicePort');
      if (servicePort !== undefined && servicePort !== 0) notCarried.push(`${m.at('servicePort')} (pods have no service ports)`);
      return { name: json.name as string, named: m.has('name'), containerPort, hostPort, json };
    });
  if (c?.has('portMappings')) return fromMappings(c.objects('portMappings'));
  if (docker?.has('portMappings')) return fromMappings(docker.objects('portMappings'));
  const discovery = ipAddress?.optObj('discovery');
  if (discovery) {
    return discovery.objects('ports').map((p, i) => {
      const containerPort = p.optInt('number');
      const json: JsonObject = { name: uniqueName(toName(p.optStr('name') ?? `port${i}`, `port${i}`), taken) };
      if (containerPort !== undefined) json.containerPort = containerPort;
      json.protocol = protocolsOf(p, 'protocol');
      const labels = p.stringMap('labels');
      if (Object.keys(labels).length > 0) json.labels = labels;
      return { name: json.name as string, named: p.has('name'), containerPort, json };
    });
  }
  return [];
}

/** portDefinitions (or the pre-1.5 ports list) on host networking as host-port endpoints. */
function hostEndpoints(r: JsonReader, notCarried: string[]): Endpoint[] {
  const requirePorts = r.optBool('requirePorts') ?? false;
  const taken = new Set<string>();
  const endpoint = (i: number, port: number, name: string | undefined, protocol: string[], labels: Record<string, string>, at: string): Endpoint => {
    // without requirePorts a non-zero port is a service port, and the host port is dynamic
    const hostPort = requirePorts ? port : 0;
    if (!requirePorts && port !== 0) notCarried.push(`${at} (service port ${port}; pods have no service ports)`);
    const json: JsonObject = { name: uniqueName(toName(name ?? `port${i}`, `port${i}`), taken), hostPort, protocol };
    if (Object.keys(labels).length > 0) json.labels = labels;
    return { name: json.name as string, named: name !== undefined, hostPort, json };
  };
  if (r.has('portDefinitions')) {
    return r.objects('portDefinitions').map((d, i) => endpoint(i, d.optInt('port') ?? 0, d.optStr('name'), protocolsOf(d, 'protocol'), d.stringMap('labels'), d.at('port')));
  }
  return r.array('ports', (p, at) => {
    if (typeof p !== 'number') throw new MarathonParseError(at, 'expected a number');
    return p;
  }).map((p, i) => endpoint(i, p, undefined, ['tcp'], {}, `${r.at('ports')}(${i})`));
}

function convertEnv(r: JsonReader): JsonObject {
  const env = r.optObj('env');
  const out: JsonObject = {};
  if (!env) return out;
  for (const [k, v] of Object.entries(env.json)) {
    if (typeof v === 'string') out[k] = v;
    else if (isJsonObject(v) && typeof v.secret === 'string') out[k] = { secret: v.secret };
    else env.fail(k, 'expected a string or {"secret": "<name>"}');
    env.consume(k);
  }
  return out;
}

/** $PORT0.., $PORT_<NAME>, $PORTS as an app on a container network sees them, unless the app sets them itself. */
function portEnvironment(endpoints: Endpoint[], hostNetwork: boolean, environment: JsonObject): string[] {
  if (hostNetwork) return [];
  const set: string[] = [];
  const put = (k: string, v: string) => {
    if (environment[k] !== undefined) return;
    environment[k] = v;
    set.push(`$${k}`);
  };
  const ports = endpoints.map((e) => e.containerPort).filter((p): p is number => p !== undefined && p > 0);
  if (ports.length !== endpoints.length || ports.length === 0) return set;
  endpoints.forEach((e, i) => {
    put(`PORT${i}`, String(e.containerPort));
    if (e.named) put(`PORT_${e.name.toUpperCase().replace(/-/g, '_')}`, String(e.containerPort));
  });
  put('PORTS', ports.join(','));
  return set;
}

function convertHealthChecks(r: JsonReader, endpoints: Endpoint[], hostNetwork: boolean, notCarried: string[], changed: string[]): JsonObject | undefined {
  let result: JsonObject | undefined;
  r.objects('healthChecks').forEach((h) => {
    if (result) {
      notCarried.push(`${h.path} (a pod container has one health check)`);
      h.consume(...Object.keys(h.json));
      return;
    }
    const protocol = h.optStr('protocol') ?? 'HTTP';
    const check: JsonObject = {};
    const endpointName = (): string | undefined => {
      const index = h.optInt('portIndex');
      const port = h.optInt('port');
      if (index !== undefined) return endpoints[index]?.name;
      if (port !== undefined) return endpoints.find((e) => (hostNetwork ? e.hostPort : e.containerPort) === port)?.name;
      return endpoints[0]?.name;
    };
    if (protocol === 'COMMAND') {
      const command = h.optObj('command') ?? h.fail('command', 'a COMMAND health check needs command.value');
      check.exec = { command: { shell: command.str('value') } };
    } else if (['HTTP', 'HTTPS', 'MESOS_HTTP', 'MESOS_HTTPS', 'TCP', 'MESOS_TCP'].includes(protocol)) {
      const endpoint = endpointName();
      if (endpoint === undefined) {
        notCarried.push(`${h.path} (its port matches no endpoint)`);
        h.consume(...Object.keys(h.json));
        return;
      }
      if (protocol.endsWith('TCP')) check.tcp = { endpoint };
      else {
        const http: JsonObject = { endpoint };
        const checkPath = h.optStr('path');
        if (checkPath !== undefined) http.path = checkPath;
        http.scheme = protocol.endsWith('HTTPS') ? 'HTTPS' : 'HTTP';
        check.http = http;
      }
      if (!protocol.startsWith('MESOS_')) changed.push(`${h.at('protocol')}: ${protocol} is now checked by Mesos inside the pod, not by Marathon`);
    } else {
      h.fail('protocol', `"${protocol}" is not a Marathon health check protocol`);
    }
    for (const k of ['gracePeriodSeconds', 'intervalSeconds', 'maxConsecutiveFailures', 'timeoutSeconds', 'delaySeconds']) {
      const n = h.optNum(k);
      if (n !== undefined) check[k] = n;
    }
    if ((h.optStr('ipProtocol') ?? 'IPv4') !== 'IPv4') notCarried.push(`${h.at('ipProtocol')} (pod health checks use IPv4)`);
    if (h.optBool('ignoreHttp1xx')) notCarried.push(`${h.at('ignoreHttp1xx')} (pods have no such option)`);
    result = check;
  });
  return result;
}

function convertScheduling(r: JsonReader): JsonObject {
  const scheduling: JsonObject = {};
  const backoff: JsonObject = {};
  const b = r.optNum('backoffSeconds');
  const f = r.optNum('backoffFactor');
  const m = r.optNum('maxLaunchDelaySeconds');
  if (b !== undefined) backoff.backoff = b;
  if (f !== undefined) backoff.backoffFactor = f;
  if (m !== undefined) backoff.maxLaunchDelay = m;
  if (Object.keys(backoff).length > 0) scheduling.backoff = backoff;
  const upgrade = r.optObj('upgradeStrategy');
  if (upgrade) {
    const u: JsonObject = {};
    for (const k of ['minimumHealthCapacity', 'maximumOverCapacity']) {
      const n = upgrade.optNum(k);
      if (n !== undefined) u[k] = n;
    }
    scheduling.upgrade = u;
  }
  const placement: JsonObject = {};
  const constraints = r.array('constraints', (v, at): JsonValue => {
    if (!Array.isArray(v) || v.length < 2 || v.length > 3 || !v.every((x) => typeof x === 'string')) {
      throw new MarathonParseError(at, 'a constraint is ["field", "OPERATOR"] or ["field", "OPERATOR", "value"]');
    }
    const c: JsonObject = { fieldName: v[0], operator: v[1] };
    if (v.length === 3) c.value = v[2];
    return c;
  });
  if (constraints.length > 0) placement.constraints = constraints;
  const roles = r.strings('acceptedResourceRoles');
  if (roles.length > 0) placement.acceptedResourceRoles = roles;
  if (Object.keys(placement).length > 0) scheduling.placement = placement;
  const unreachable = r.raw('unreachableStrategy');
  if (unreachable !== undefined) scheduling.unreachableStrategy = unreachable;
  const kill = r.optStr('killSelection');
  if (kill !== undefined) scheduling.killSelection = kill;
  return scheduling;
}
