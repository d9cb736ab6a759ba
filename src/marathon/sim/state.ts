/**
 * The simulator's Marathon: groups, apps with their tasks, pods with their instances, and the
 * events each change produces. Deployments finish at once; one task (pod instance) per
 * instance, placed round-robin on the agents; containers on `container` networks get an IP
 * from the container network. Health checks pass by themselves after a delay, or only when a
 * test says (setHealth). Deterministic for a given RNG seed.
 */
import { ApiError, checkUpdateBody, isObj, normalizeApp, normalizePod, notValid, pathIdErrors, resolveId, type Json, type NormalizeContext, type Obj } from './definitions';
import { IpPool } from './ip-pool';

export interface SimAgent {
  hostname: string;
  agentId: string;
  ip: string;
}

export interface SimTask {
  appId: string;
  id: string;
  host: string;
  slaveId: string;
  state: string;
  stagedAt: string;
  startedAt: string;
  version: string;
  ports: number[];
  servicePorts: number[];
  /** the container's IP on a container network, else the agent's */
  ip: string;
  /** `ip` came from the container network (and goes back to it when the task ends) */
  containerIp: boolean;
  /** present when the app has health checks */
  health?: SimHealth;
}

/** Marathon's health of a task or pod instance whose definition has health checks. */
export interface SimHealth {
  /** undefined: not checked yet */
  alive?: boolean;
  /** health checks of the definition; a task carries one result per check */
  checks: number;
  consecutiveFailures: number;
  firstSuccess?: string;
  lastSuccess?: string;
  lastFailure?: string;
  lastFailureCause?: string;
}

interface AppRecord {
  def: Obj;
  tasks: SimTask[];
  lastTaskFailure?: Obj;
}

interface PodInstance {
  id: string;
  agent: SimAgent;
  /** allocated host ports by container index * 16 + endpoint index; unset for an endpoint without a host port */
  ports: number[];
  /** one per network of the pod: on a container network an IP of its own, else the agent's */
  networks: Array<{ name?: string; ip: string; containerIp: boolean }>;
  createdAt: string;
  status: string;
  /** present when a container has a health check */
  health?: SimHealth;
}

interface PodRecord {
  def: Obj;
  instances: PodInstance[];
}

interface GroupRecord {
  id: string;
  dependencies: Json[];
  version: string;
  enforceRole: boolean;
}

export interface ChangeOrigin {
  clientIp?: string;
  uri?: string;
}

/** Events go out lazily: the payload is built only when someone listens. */
export type EventSink = (type: string, payload: () => Obj) => void;

export interface MarathonStateOptions {
  agents?: string[];
  /** seeds the RNG behind uuids and ports (default 1) */
  seed?: number;
  now?: () => string;
  emit?: EventSink;
  /** where containers on `container` networks get their IPs (default 9.0.0.0/8) */
  containerNetworkCidr?: string;
  /**
   * ms from a task's (pod instance's) start until its first health check passes, for
   * definitions with health checks (default 1000); null: never by itself, only setHealth
   */
  healthCheckDelayMs?: number | null;
}

/** mulberry32: small, fast, good enough for ids. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const parentOf = (id: string) => {
  const i = id.lastIndexOf('/');
  return i <= 0 ? '/' : id.slice(0, i);
};

type Action = { action: string; app?: string; pod?: string };

export class MarathonState {
  readonly apps = new Map<string, AppRecord>();
  readonly pods = new Map<string, PodRecord>();
  readonly groups = new Map<string, GroupRecord>();
  readonly agents: SimAgent[];
  emit: EventSink;
  private readonly random: () => number;
  private readonly now: () => string;
  private placement = 0;
  private readonly defJson = new WeakMap<Obj, string>();
  private servicePort = 10000;
  private hostPort = 31000;
  private readonly containerIps: IpPool;
  private readonly healthCheckDelayMs: number | null;
  private readonly healthTimers = new Map<string, NodeJS.Timeout>();

  constructor(opts: MarathonStateOptions = {}) {
    this.random = seededRandom(opts.seed ?? 1);
    this.now = opts.now ?? (() => new Date().toISOString());
    this.emit = opts.emit ?? (() => {});
    this.containerIps = new IpPool(opts.containerNetworkCidr);
    this.healthCheckDelayMs = opts.healthCheckDelayMs === undefined ? 1000 : opts.healthCheckDelayMs;
    const hosts = opts.agents && opts.agents.length > 0 ? opts.agents : ['agent-1', 'agent-2', 'agent-3'];
    const frameworkish = this.uuid();
    this.agents = hosts.map((hostname, i) => ({ hostname, agentId: `${frameworkish}-S${i}`, ip: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}` }));
    this.groups.set('/', { id: '/', dependencies: [], version: this.now(), enforceRole: false });
  }

  uuid(): string {
    const hex = (n: number) => {
      let s = '';
      for (let i = 0; i < n; i++) s += Math.floor(this.random() * 16).toString(16);
      return s;
    };
    return `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[Math.floor(this.random() * 4)]}${hex(3)}-${hex(12)}`;
  }

  private ctx(base?: string): NormalizeContext {
    return { now: this.now(), nextServicePort: () => this.servicePort++, base };
  }

  // --- reads ---------------------------------------------------------------------------------

  app(id: string): AppRecord {
    const rec = this.apps.get(id);
    if (!rec) throw new ApiError(404, { message: `App '${id}' does not exist` });
    return rec;
  }

  pod(id: string): PodRecord {
    const rec = this.pods.get(id);
    if (!rec) throw new ApiError(404, { message: `Pod '${id}' does not exist` });
    return rec;
  }

  appInfo(rec: AppRecord, embed: { tasks?: boolean; lastTaskFailure?: boolean; counts?: boolean } = {}): Obj {
    const running = rec.tasks.filter((t) => t.state === 'TASK_RUNNING').length;
    const out: Obj = { ...rec.def };
    if (embed.counts !== false) {
      out.tasksStaged = rec.tasks.filter((t) => t.state === 'TASK_STAGING').length;
      out.tasksRunning = running;
      out.tasksHealthy = rec.tasks.filter((t) => t.health?.alive === true).length;
      out.tasksUnhealthy = rec.tasks.filter((t) => t.health?.alive === false).length;
      out.deployments = [];
    }
    if (embed.tasks) out.tasks = rec.tasks.map((t) => this.taskJson(t));
    if (embed.lastTaskFailure && rec.lastTaskFailure) out.lastTaskFailure = rec.lastTaskFailure;
    return out;
  }

  /**
   * appInfo as JSON text, for the big lists: the definition's JSON is cached per def object
   * (defs are replaced on change, never edited in place), which keeps 10,000 apps fast.
   */
  appInfoJson(rec: AppRecord, embed: { tasks?: boolean; lastTaskFailure?: boolean } = {}): string {
    let def = this.defJson.get(rec.def);
    if (def === undefined) {
      def = JSON.stringify(rec.def).slice(0, -1);
      this.defJson.set(rec.def, def);
    }
    let staged = 0;
    let running = 0;
    let healthy = 0;
    let unhealthy = 0;
    for (const t of rec.tasks) {
      if (t.state === 'TASK_RUNNING') running++;
      else if (t.state === 'TASK_STAGING') staged++;
      if (t.health?.alive === true) healthy++;
      else if (t.health?.alive === false) unhealthy++;
    }
    let out = `${def}${def.length > 1 ? ',' : ''}"tasksStaged":${staged},"tasksRunning":${running},"tasksHealthy":${healthy},"tasksUnhealthy":${unhealthy},"deployments":[]`;
    if (embed.tasks) out += `,"tasks":${JSON.stringify(rec.tasks.map((t) => this.taskJson(t)))}`;
    if (embed.lastTaskFailure && rec.lastTaskFailure) out += `,"lastTaskFailure":${JSON.stringify(rec.lastTaskFailure)}`;
    return out + '}';
  }

  taskJson(t: SimTask): Obj {
    return {
      appId: t.appId,
      healthCheckResults: healthCheckResults(t.health, instanceIdOf(t.id)),
      host: t.host,
      id: t.id,
      ipAddresses: [{ ipAddress: t.ip, protocol: 'IPv4' }],
      ports: t.ports,
      servicePorts: t.servicePorts,
      slaveId: t.slaveId,
      state: t.state,
      stagedAt: t.stagedAt,
      startedAt: t.startedAt,
      version: t.version,
      localVolumes: [],
    };
  }

  podStatus(rec: PodRecord): Obj {
    const def = rec.def;
    const id = def.id as string;
    const containers = def.containers as Obj[];
    const instances = rec.instances.map((inst) => ({
      id: inst.id,
      status: inst.status,
      statusSince: inst.createdAt,
      conditions: [],
      agentHostname: inst.agent.hostname,
      agentId: inst.agent.agentId,
      agentRegion: 'primary',
      agentZone: 'a',
      resources: { cpus: 0, mem: 0, disk: 0, gpus: 0 },
      networks: inst.networks.map((n) => ({ ...(n.name !== undefined ? { name: n.name } : {}), addresses: [n.ip] })),
      containers: containers.map((c, ci) => {
        const checked = isObj(c.healthCheck) && inst.status !== 'TERMINAL' ? inst.health : undefined;
        const checkedEndpoint = isObj(c.healthCheck) ? healthCheckEndpoint(c.healthCheck) : undefined;
        return {
          name: c.name,
          status: inst.status === 'TERMINAL' ? 'TASK_KILLED' : 'TASK_RUNNING',
          statusSince: inst.createdAt,
          // as Marathon: a container with a health check reports `healthy`, false until Mesos reports it
          conditions: checked
            ? [{ name: 'healthy', lastChanged: inst.createdAt, lastUpdated: inst.createdAt, value: String(checked.alive === true), reason: checked.alive === undefined ? 'health-unreported-by-mesos' : 'health-reported-by-mesos' }]
            : [],
          containerId: `${inst.id}.${String(c.name)}`,
          endpoints: ((c.endpoints as Obj[] | undefined) ?? []).map((e, ei) => {
            const allocated = inst.ports[ci * 16 + ei];
            return {
              name: e.name,
              ...(allocated !== undefined ? { allocatedHostPort: allocated } : {}),
              ...(checked?.alive !== undefined && e.name === checkedEndpoint ? { healthy: checked.alive } : {}),
            };
          }),
          resources: c.resources,
          lastUpdated: inst.createdAt,
          lastChanged: inst.createdAt,
        };
      }),
      specReference: `/v2/pods${id}::versions/${String(def.version)}`,
      localVolumes: [],
      lastUpdated: inst.createdAt,
      lastChanged: inst.createdAt,
    }));
    const want = (def.scaling as Obj).instances as number;
    return {
      id,
      spec: def,
      status: rec.instances.length < want || rec.instances.some((i) => i.status !== 'STABLE') ? 'DEGRADED' : 'STABLE',
      statusSince: def.version,
      instances,
      terminationHistory: [],
      lastUpdated: this.now(),
      lastChanged: def.version,
    };
  }

  /** Everything a group holds, as `/v2/groups` renders it for the given embeds. */
  groupJson(id: string, embed: { apps: boolean; pods: boolean; groups: boolean; tasks: boolean; counts: boolean }): Obj {
    const g = this.groups.get(id);
    if (!g) throw new ApiError(404, { message: `Group '${id}' does not exist`, details: [] });
    const children = this.childIndex();
    const render = (gid: string): Obj => {
      const rec = this.groups.get(gid)!;
      const kids = children.get(gid) ?? { apps: [], pods: [], groups: [] };
      const out: Obj = { id: gid };
      if (embed.apps) out.apps = kids.apps.map((a) => this.appInfo(this.apps.get(a)!, { tasks: embed.tasks, counts: embed.counts }));
      if (embed.pods) out.pods = kids.pods.map((p) => this.podStatus(this.pods.get(p)!));
      if (embed.groups) out.groups = kids.groups.map(render);
      out.dependencies = rec.dependencies;
      out.version = rec.version;
      out.enforceRole = rec.enforceRole;
      return out;
    };
    return render(id);
  }

  private childIndex(): Map<string, { apps: string[]; pods: string[]; groups: string[] }> {
    const m = new Map<string, { apps: string[]; pods: string[]; groups: string[] }>();
    const at = (p: string) => {
      let e = m.get(p);
      if (!e) m.set(p, (e = { apps: [], pods: [], groups: [] }));
      return e;
    };
    for (const id of this.groups.keys()) if (id !== '/') at(parentOf(id)).groups.push(id);
    for (const id of this.apps.keys()) at(parentOf(id)).apps.push(id);
    for (const id of this.pods.keys()) at(parentOf(id)).pods.push(id);
    return m;
  }

  // --- apps ----------------------------------------------------------------------------------

  private checkFree(id: string, kind: 'app' | 'pod' | 'group'): void {
    if (kind !== 'app' && this.apps.has(id)) throw new ApiError(409, { message: `An app with id [${id}] already exists.` });
    if (kind !== 'pod' && this.pods.has(id)) throw new ApiError(409, { message: `A pod with id [${id}] already exists.` });
    if (kind !== 'group' && this.groups.has(id)) throw new ApiError(409, { message: `A group with id [${id}] already exists.` });
    for (let p = parentOf(id); p !== '/'; p = parentOf(p)) {
      if (this.apps.has(p) || this.pods.has(p)) throw notValid([{ path: '/id', errors: [`${p} is an app or pod, not a group`] }]);
    }
  }

  private ensureGroups(id: string, version: string): void {
    const missing: string[] = [];
    for (let p = parentOf(id); !this.groups.has(p); p = parentOf(p)) missing.push(p);
    for (const p of missing) this.groups.set(p, { id: p, dependencies: [], version, enforceRole: false });
  }

  /** POST /v2/apps */
  createApp(body: Json, origin: ChangeOrigin = {}): { app: Obj; deploymentId: string } {
    const def = normalizeApp(body, this.ctx());
    const id = def.id as string;
    if (this.apps.has(id)) throw new ApiError(409, { message: `An app with id [${id}] already exists.` });
    this.checkFree(id, 'app');
    const deploymentId = this.deploy([{ action: 'StartApplication', app: id }], def.version as string, () => {
      this.apiPostEvent(def, origin);
      this.putAppRecord(def);
    });
    const app = this.appInfo(this.apps.get(id)!);
    app.tasksRunning = 0;
    app.deployments = [{ id: deploymentId }];
    return { app, deploymentId };
  }

  /** PUT /v2/apps/{id} (partialUpdate defaults to true): 200 update, 201 create. */
  putApp(id: string, body: Json, opts: ChangeOrigin & { partial?: boolean } = {}): { created: boolean; version: string; deploymentId: string } {
    if (!isObj(body)) throw new ApiError(422, { message: 'Invalid JSON', details: [{ path: '', errors: ['error.expected.jsobject'] }] });
    checkUpdateBody(body);
    if (body.id !== undefined && typeof body.id === 'string' && resolveId(body.id) !== id) {
      throw new ApiError(400, { message: `The supplied id ${String(body.id)} does not match the path ${id}` });
    }
    const existing = this.apps.get(id);
    if (typeof body.version === 'string' && existing) {
      return { created: false, version: existing.def.version as string, deploymentId: this.deploy([], existing.def.version as string, () => {}) };
    }
    const merged: Obj = existing && opts.partial !== false ? { ...stripAppInfo(existing.def), ...body, id } : { ...body, id };
    delete merged.version;
    delete merged.versionInfo;
    const def = normalizeApp(merged, this.ctx());
    if (!existing) this.checkFree(id, 'app');
    const action = existing ? (onlyScaling(existing.def, def) ? 'ScaleApplication' : 'RestartApplication') : 'StartApplication';
    if (existing && action === 'ScaleApplication') def.versionInfo = { ...(existing.def.versionInfo as Obj), lastScalingAt: def.version };
    const deploymentId = this.deploy([{ action, app: id }], def.version as string, () => {
      this.apiPostEvent(def, opts);
      this.putAppRecord(def, existing, action === 'RestartApplication');
    });
    return { created: !existing, version: def.version as string, deploymentId };
  }

  /** DELETE /v2/apps/{id} */
  deleteApp(id: string): { version: string; deploymentId: string } {
    const rec = this.app(id);
    const version = this.now();
    const deploymentId = this.deploy([{ action: 'StopApplication', app: id }], version, () => this.removeApp(id, rec));
    return { version, deploymentId };
  }

  /** DELETE /v2/apps/{id}/tasks/{taskId}: kills the task; without `scale` Marathon starts a replacement. */
  killTask(appId: string, taskId: string, scale = false): SimTask {
    const rec = this.app(appId);
    const task = rec.tasks.find((t) => t.id === taskId);
    if (!task) throw new ApiError(404, { message: `Task '${taskId}' does not exist` });
    this.stopTasks(rec, [task]);
    rec.tasks = rec.tasks.filter((t) => t !== task);
    if (scale) {
      const version = this.now();
      // defs are replaced, never changed in place: their JSON is cached
      rec.def = { ...rec.def, instances: Math.max(0, (rec.def.instances as number) - 1), version, versionInfo: { ...(rec.def.versionInfo as Obj), lastScalingAt: version } };
    } else {
      this.startTasks(rec, 1);
    }
    this.emit('group_change_success', () => ({ groupId: parentOf(appId), version: this.now() }));
    return task;
  }

  /** POST /v2/apps/{id}/restart */
  restartApp(id: string): { version: string; deploymentId: string } {
    const rec = this.app(id);
    const version = this.now();
    const def = { ...rec.def, version };
    const deploymentId = this.deploy([{ action: 'RestartApplication', app: id }], version, () => this.putAppRecord(def, rec, true));
    return { version, deploymentId };
  }

  private apiPostEvent(def: Obj, origin: ChangeOrigin): void {
    if (origin.uri === undefined) return; // group changes and seeding post no api_post_event
    this.emit('api_post_event', () => ({ clientIp: origin.clientIp ?? '127.0.0.1', uri: origin.uri!, appDefinition: def }));
  }

  private putAppRecord(def: Obj, existing?: AppRecord, restart = false): void {
    const id = def.id as string;
    this.ensureGroups(id, def.version as string);
    if (!existing) {
      const rec: AppRecord = { def, tasks: [] };
      this.apps.set(id, rec);
      this.startTasks(rec, def.instances as number);
      return;
    }
    existing.def = def;
    if (restart) {
      const old = existing.tasks;
      existing.tasks = [];
      this.stopTasks(existing, old);
      this.startTasks(existing, def.instances as number);
      return;
    }
    const want = def.instances as number;
    if (existing.tasks.length > want) {
      const killed = existing.tasks.slice(want); // YOUNGEST_FIRST: the newest tasks go
      existing.tasks = existing.tasks.slice(0, want);
      this.stopTasks(existing, killed);
    } else {
      this.startTasks(existing, want - existing.tasks.length);
    }
  }

  private removeApp(id: string, rec: AppRecord): void {
    this.apps.delete(id);
    this.stopTasks(rec, rec.tasks);
    rec.tasks = [];
    this.emit('app_terminated_event', () => ({ appId: id }));
  }

  private nextAgent(): SimAgent {
    return this.agents[this.placement++ % this.agents.length];
  }

  private startTasks(rec: AppRecord, n: number): void {
    const def = rec.def;
    const appId = def.id as string;
    const definitions = (def.portDefinitions as Obj[] | undefined) ?? [];
    const mappings = ((def.container as Obj | undefined)?.portMappings as Obj[] | undefined) ?? [];
    // host networking: a host port per definition (its own number with requirePorts); else one per mapping that has a host port (0: any)
    const wanted: number[] = definitions.length
      ? definitions.map((p) => (def.requirePorts === true ? (p.port as number) : 0))
      : mappings.filter((m) => typeof m.hostPort === 'number').map((m) => m.hostPort as number);
    const servicePorts = (definitions.length ? definitions.map((p) => p.port) : mappings.map((m) => m.servicePort)).filter((p): p is number => typeof p === 'number');
    const onContainerNetwork = (def.networks as Obj[]).some((net) => net.mode === 'container');
    const checks = Array.isArray(def.healthChecks) ? def.healthChecks.length : 0;
    for (let i = 0; i < n; i++) {
      const agent = this.nextAgent();
      const now = this.now();
      const task: SimTask = {
        appId,
        id: `${appId.slice(1).replace(/\//g, '_')}.instance-${this.uuid()}._app.1`,
        host: agent.hostname,
        slaveId: agent.agentId,
        state: 'TASK_RUNNING',
        stagedAt: now,
        startedAt: now,
        version: def.version as string,
        ports: wanted.map((p) => p || this.hostPort++),
        servicePorts,
        ip: onContainerNetwork ? this.containerIps.allocate() : agent.ip,
        containerIp: onContainerNetwork,
      };
      if (checks > 0) task.health = { checks, consecutiveFailures: 0 };
      rec.tasks.push(task);
      this.taskEvents(task, agent, 'TASK_RUNNING', 'Running');
      if (task.health) this.scheduleFirstCheck(task.id, () => this.checkedTask(rec, task, true, ''));
    }
  }

  private stopTasks(rec: AppRecord, tasks: SimTask[]): void {
    for (const t of tasks) {
      t.state = 'TASK_KILLED';
      this.cancelFirstCheck(t.id);
      if (t.containerIp) this.containerIps.release(t.ip);
      const agent = this.agents.find((a) => a.agentId === t.slaveId) ?? this.agents[0];
      this.taskEvents(t, agent, 'TASK_KILLED', 'Killed');
    }
  }

  private taskEvents(t: SimTask, agent: SimAgent, taskStatus: string, condition: string): void {
    this.emit('status_update_event', () => ({
      slaveId: t.slaveId, taskId: t.id, taskStatus, message: '', appId: t.appId, host: t.host,
      ipAddresses: [{ ipAddress: t.ip, protocol: 'IPv4' }], ports: t.ports, version: t.version,
    }));
    this.emit('instance_changed_event', () => ({
      instanceId: instanceIdOf(t.id), condition, runSpecId: t.appId, agentId: agent.agentId, host: t.host, runSpecVersion: t.version,
    }));
  }

  // --- health (the simulator's own: Marathon runs real checks) ------------------------------

  /**
   * Sets the health of a task (by task id or instance id) or a pod instance (by instance id or a
   * container's task id) whose definition has health checks, with Marathon's events:
   * `failed_health_check_event` for a failing check, `health_status_changed_event` when it flips.
   * 404 for an unknown task, 409 when its definition has no health checks.
   */
  setHealth(id: string, alive: boolean, cause = 'simulated failure'): Obj {
    for (const rec of this.apps.values()) {
      const task = rec.tasks.find((t) => t.id === id || instanceIdOf(t.id) === id);
      if (!task) continue;
      if (!task.health) throw new ApiError(409, { message: `App '${task.appId}' has no healthChecks: its tasks carry no health results` });
      this.cancelFirstCheck(task.id);
      this.checkedTask(rec, task, alive, cause);
      return this.taskJson(task);
    }
    for (const rec of this.pods.values()) {
      const inst = rec.instances.find((i) => i.id === id || id.startsWith(`${i.id}.`));
      if (!inst) continue;
      if (!inst.health) throw new ApiError(409, { message: `Pod '${String(rec.def.id)}' has no container with a healthCheck: its instances carry no health` });
      this.cancelFirstCheck(inst.id);
      this.checkedPodInstance(rec, inst, alive, cause);
      return (this.podStatus({ def: rec.def, instances: [inst] }).instances as Obj[])[0];
    }
    throw new ApiError(404, { message: `Task '${id}' does not exist` });
  }

  /** The first check of a new task passes after healthCheckDelayMs, unless a test decided first; stopping the task cancels it. */
  private scheduleFirstCheck(id: string, pass: () => void): void {
    if (this.healthCheckDelayMs === null) return;
    const timer = setTimeout(() => {
      this.healthTimers.delete(id);
      pass();
    }, this.healthCheckDelayMs);
    timer.unref();
    this.healthTimers.set(id, timer);
  }

  private cancelFirstCheck(id: string): void {
    const timer = this.healthTimers.get(id);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.healthTimers.delete(id);
  }

  private checked(h: SimHealth, alive: boolean, cause: string, ev: { appId: string; taskId: string; instanceId: string; version: string; healthCheck: Json }): void {
    const was = h.alive;
    const now = this.now();
    h.alive = alive;
    if (alive) {
      h.consecutiveFailures = 0;
      h.firstSuccess ??= now;
      h.lastSuccess = now;
    } else {
      h.consecutiveFailures++;
      h.lastFailure = now;
      h.lastFailureCause = cause;
      this.emit('failed_health_check_event', () => ({ appId: ev.appId, taskId: ev.taskId, instanceId: ev.instanceId, healthCheck: ev.healthCheck ?? {} }));
    }
    if (was !== alive) this.emit('health_status_changed_event', () => ({ appId: ev.appId, instanceId: ev.instanceId, version: ev.version, alive }));
  }

  private checkedTask(rec: AppRecord, task: SimTask, alive: boolean, cause: string): void {
    this.checked(task.health!, alive, cause, { appId: task.appId, taskId: task.id, instanceId: instanceIdOf(task.id), version: task.version, healthCheck: (rec.def.healthChecks as Json[])[0] });
  }

  private checkedPodInstance(rec: PodRecord, inst: PodInstance, alive: boolean, cause: string): void {
    const container = (rec.def.containers as Obj[]).find((c) => isObj(c.healthCheck))!;
    inst.status = alive ? 'STABLE' : 'DEGRADED';
    this.checked(inst.health!, alive, cause, { appId: rec.def.id as string, taskId: `${inst.id}.${String(container.name)}`, instanceId: inst.id, version: rec.def.version as string, healthCheck: container.healthCheck });
  }

  // --- pods ----------------------------------------------------------------------------------

  /** POST /v2/pods */
  createPod(body: Json, origin: ChangeOrigin = {}): Obj {
    const def = normalizePod(body, this.ctx());
    const id = def.id as string;
    if (this.pods.has(id)) throw new ApiError(409, { message: `A pod with id [${id}] already exists.` });
    this.checkFree(id, 'pod');
    this.deploy([{ action: 'StartPod', pod: id }], def.version as string, () => {
      this.putPodRecord(def);
      this.emit('pod_created_event', () => ({ clientIp: origin.clientIp ?? '127.0.0.1', uri: `/v2/pods${id}` }));
    });
    return def;
  }

  /** PUT /v2/pods/{id}: updates or creates; an id that disagrees with the path is 400. */
  putPod(id: string, body: Json, origin: ChangeOrigin = {}): { created: boolean; pod: Obj; deploymentId: string } {
    if (isObj(body) && typeof body.id === 'string' && resolveId(body.id) !== id) {
      throw new ApiError(400, { message: `Pod id ${body.id} in the body does not match the path ${id}` });
    }
    const def = normalizePod(isObj(body) ? { ...body, id, version: undefined } : body, this.ctx());
    const existing = this.pods.get(id);
    if (!existing) this.checkFree(id, 'pod');
    const deploymentId = this.deploy([{ action: existing ? 'RestartPod' : 'StartPod', pod: id }], def.version as string, () => {
      this.putPodRecord(def, existing);
      this.emit(existing ? 'pod_updated_event' : 'pod_created_event', () => ({ clientIp: origin.clientIp ?? '127.0.0.1', uri: `/v2/pods${id}` }));
    });
    return { created: !existing, pod: def, deploymentId };
  }

  /** DELETE /v2/pods/{id} */
  deletePod(id: string, origin: ChangeOrigin = {}): string {
    const rec = this.pod(id);
    return this.deploy([{ action: 'StopPod', pod: id }], this.now(), () => {
      this.removePod(id, rec);
      this.emit('pod_deleted_event', () => ({ clientIp: origin.clientIp ?? '127.0.0.1', uri: `/v2/pods${id}` }));
    });
  }

  /** DELETE /v2/pods/{id}::instances/{instanceId}: kills an instance; Marathon replaces it. */
  killPodInstance(id: string, instanceId: string): Obj {
    const rec = this.pod(id);
    const inst = rec.instances.find((i) => i.id === instanceId);
    if (!inst) throw new ApiError(404, { message: `Instance '${instanceId}' does not exist` });
    const status = this.podStatus({ def: rec.def, instances: [inst] });
    rec.instances = rec.instances.filter((i) => i !== inst);
    this.stopPodInstances(rec, [inst]);
    this.startPodInstances(rec, 1);
    return (status.instances as Obj[])[0];
  }

  private putPodRecord(def: Obj, existing?: PodRecord): void {
    const id = def.id as string;
    this.ensureGroups(id, def.version as string);
    const want = (def.scaling as Obj).instances as number;
    if (!existing) {
      const rec: PodRecord = { def, instances: [] };
      this.pods.set(id, rec);
      this.startPodInstances(rec, want);
      return;
    }
    const old = existing.instances;
    existing.def = def;
    existing.instances = [];
    this.stopPodInstances(existing, old);
    this.startPodInstances(existing, want);
  }

  private removePod(id: string, rec: PodRecord): void {
    this.pods.delete(id);
    this.stopPodInstances(rec, rec.instances);
    rec.instances = [];
    this.emit('app_terminated_event', () => ({ appId: id }));
  }

  private startPodInstances(rec: PodRecord, n: number): void {
    const id = rec.def.id as string;
    const containers = rec.def.containers as Obj[];
    const networks = rec.def.networks as Obj[];
    const checks = containers.filter((c) => isObj(c.healthCheck)).length;
    for (let i = 0; i < n; i++) {
      const agent = this.nextAgent();
      const inst: PodInstance = {
        id: `${id.slice(1).replace(/\//g, '_')}.instance-${this.uuid()}`,
        agent,
        ports: [],
        networks: networks.map((net) => {
          const containerIp = net.mode === 'container';
          return { ...(typeof net.name === 'string' ? { name: net.name } : {}), ip: containerIp ? this.containerIps.allocate() : agent.ip, containerIp };
        }),
        createdAt: this.now(),
        // Marathon: DEGRADED while a container's health is unreported or failing
        status: checks > 0 ? 'DEGRADED' : 'STABLE',
      };
      if (checks > 0) inst.health = { checks, consecutiveFailures: 0 };
      const onContainerNetwork = networks.some((net) => net.mode === 'container');
      containers.forEach((c, ci) => {
        ((c.endpoints as Obj[] | undefined) ?? []).forEach((e, ei) => {
          // on a container network only an endpoint that asks for a host port gets one
          if (onContainerNetwork && typeof e.hostPort !== 'number') return;
          inst.ports[ci * 16 + ei] = typeof e.hostPort === 'number' && e.hostPort !== 0 ? e.hostPort : this.hostPort++;
        });
      });
      rec.instances.push(inst);
      this.podInstanceEvents(rec, inst, 'TASK_RUNNING', 'Running');
      if (inst.health) this.scheduleFirstCheck(inst.id, () => this.checkedPodInstance(rec, inst, true, ''));
    }
  }

  private stopPodInstances(rec: PodRecord, instances: PodInstance[]): void {
    for (const inst of instances) {
      inst.status = 'TERMINAL';
      this.cancelFirstCheck(inst.id);
      for (const n of inst.networks) if (n.containerIp) this.containerIps.release(n.ip);
      this.podInstanceEvents(rec, inst, 'TASK_KILLED', 'Killed');
    }
  }

  private podInstanceEvents(rec: PodRecord, inst: PodInstance, taskStatus: string, condition: string): void {
    const id = rec.def.id as string;
    const version = rec.def.version as string;
    for (const c of rec.def.containers as Obj[]) {
      this.emit('status_update_event', () => ({
        slaveId: inst.agent.agentId, taskId: `${inst.id}.${String(c.name)}`, taskStatus, message: '', appId: id, host: inst.agent.hostname,
        ipAddresses: inst.networks.map((n) => ({ ipAddress: n.ip, protocol: 'IPv4' })), ports: inst.ports.filter((p) => p !== undefined), version,
      }));
    }
    this.emit('instance_changed_event', () => ({ instanceId: inst.id, condition, runSpecId: id, agentId: inst.agent.agentId, host: inst.agent.hostname, runSpecVersion: version }));
  }

  // --- groups --------------------------------------------------------------------------------

  /**
   * POST /v2/groups (`create`) and PUT /v2/groups/{id}: makes the group look like `body`.
   * Listed apps, pods and subgroups are created or updated; on PUT, ones the body's lists leave out are removed.
   */
  updateGroup(id: string, body: Json, opts: { create?: boolean; dryRun?: boolean } = {}): { version: string; deploymentId: string; steps: Action[] } {
    if (!isObj(body)) throw new ApiError(422, { message: 'Invalid JSON', details: [{ path: '', errors: ['error.expected.jsobject'] }] });
    const gid = resolveId(typeof body.id === 'string' ? body.id : id, id === '/' ? '/' : parentOf(id));
    const idErrors = pathIdErrors(gid, true);
    if (idErrors.length) throw notValid([{ path: '/id', errors: idErrors }]);
    if (opts.create && this.groups.has(gid) && (gid !== '/' || this.apps.size + this.pods.size + this.groups.size > 1)) {
      throw new ApiError(409, { message: `Group ${gid} is already created. Use PUT to change this group.` });
    }
    const version = this.now();
    // check everything first: a bad request changes nothing
    const apps: Obj[] = [];
    const pods: Obj[] = [];
    const groups: Array<{ id: string; dependencies: Json[] }> = [];
    const listed = new Map<string, { apps?: Set<string>; pods?: Set<string>; groups?: Set<string> }>();
    const problems: Array<{ path: string; errors: string[] }> = [];
    const walk = (g: Obj, gId: string, path: string) => {
      groups.push({ id: gId, dependencies: Array.isArray(g.dependencies) ? g.dependencies : [] });
      const entry: { apps?: Set<string>; pods?: Set<string>; groups?: Set<string> } = {};
      listed.set(gId, entry);
      if (Array.isArray(g.apps)) {
        entry.apps = new Set();
        g.apps.forEach((a, i) => {
          try {
            const def = normalizeApp(a, { ...this.ctx(gId), now: version });
            if (parentOf(def.id as string) !== gId) throw notValid([{ path: '/id', errors: [`app ${String(def.id)} is not a direct child of group ${gId}`] }]);
            apps.push(def);
            entry.apps!.add(def.id as string);
          } catch (err) {
            if (!(err instanceof ApiError)) throw err;
            for (const d of ((err.body as Obj).details as Array<{ path: string; errors: string[] }>) ?? []) problems.push({ path: `${path}/apps(${i})${d.path}`, errors: d.errors });
          }
        });
      }
      if (Array.isArray(g.pods)) {
        entry.pods = new Set();
        g.pods.forEach((p, i) => {
          try {
            const def = normalizePod(isObj(p) && isObj(p.spec) ? p.spec : p, { ...this.ctx(gId), now: version });
            pods.push(def);
            entry.pods!.add(def.id as string);
          } catch (err) {
            if (!(err instanceof ApiError)) throw err;
            for (const d of ((err.body as Obj).details as Array<{ path: string; errors: string[] }>) ?? []) problems.push({ path: `${path}/pods(${i})${d.path}`, errors: d.errors });
          }
        });
      }
      if (Array.isArray(g.groups)) {
        entry.groups = new Set();
        g.groups.forEach((sub, i) => {
          if (!isObj(sub) || typeof sub.id !== 'string') {
            problems.push({ path: `${path}/groups(${i})/id`, errors: ['error.path.missing'] });
            return;
          }
          const subId = resolveId(sub.id, gId);
          const errs = pathIdErrors(subId, true);
          if (errs.length) problems.push({ path: `${path}/groups(${i})/id`, errors: errs });
          entry.groups!.add(subId);
          walk(sub, subId, `${path}/groups(${i})`);
        });
      }
    };
    walk(body, gid, '');
    const seen = new Set<string>();
    for (const x of [...apps.map((a) => a.id as string), ...pods.map((p) => p.id as string), ...groups.map((g) => g.id)]) {
      if (seen.has(x)) problems.push({ path: '/', errors: [`id ${x} is used more than once`] });
      seen.add(x);
    }
    if (problems.length) throw notValid(problems);
    for (const a of apps) if (this.pods.has(a.id as string) || this.groups.has(a.id as string)) throw new ApiError(409, { message: `An app with id [${String(a.id)}] clashes with a pod or group.` });
    for (const p of pods) if (this.apps.has(p.id as string) || this.groups.has(p.id as string)) throw new ApiError(409, { message: `A pod with id [${String(p.id)}] clashes with an app or group.` });
    for (const g of groups) if (g.id !== '/' && (this.apps.has(g.id) || this.pods.has(g.id))) throw new ApiError(409, { message: `A group with id [${g.id}] clashes with an app or pod.` });

    const steps: Action[] = [];
    const removals: Array<() => void> = [];
    if (!opts.create) {
      const children = this.childIndex();
      for (const [gId, entry] of listed) {
        const kids = children.get(gId);
        if (!kids) continue;
        if (entry.apps) for (const appId of kids.apps) if (!entry.apps.has(appId)) {
          const rec = this.apps.get(appId)!;
          steps.push({ action: 'StopApplication', app: appId });
          removals.push(() => this.removeApp(appId, rec));
        }
        if (entry.pods) for (const podId of kids.pods) if (!entry.pods.has(podId)) {
          const rec = this.pods.get(podId)!;
          steps.push({ action: 'StopPod', pod: podId });
          removals.push(() => this.removePod(podId, rec));
        }
        if (entry.groups) for (const sub of kids.groups) if (!entry.groups.has(sub)) removals.push(() => this.removeGroupTree(sub, steps));
      }
    }
    for (const a of apps) steps.push({ action: this.apps.has(a.id as string) ? 'RestartApplication' : 'StartApplication', app: a.id as string });
    for (const p of pods) steps.push({ action: this.pods.has(p.id as string) ? 'RestartPod' : 'StartPod', pod: p.id as string });
    if (opts.dryRun) return { version, deploymentId: '', steps };
    const deploymentId = this.deploy(steps, version, () => {
      for (const r of removals) r();
      for (const g of groups) {
        this.ensureGroups(`${g.id === '/' ? '' : g.id}/x`, version);
        const rec = this.groups.get(g.id)!;
        rec.dependencies = g.dependencies;
        rec.version = version;
      }
      for (const a of apps) {
        const existing = this.apps.get(a.id as string);
        this.putAppRecord(a, existing, existing !== undefined && !onlyScaling(existing.def, a));
      }
      for (const p of pods) this.putPodRecord(p, this.pods.get(p.id as string));
    }, gid);
    return { version, deploymentId, steps };
  }

  /** DELETE /v2/groups/{id} */
  deleteGroup(id: string): { version: string; deploymentId: string } {
    if (!this.groups.has(id)) throw new ApiError(404, { message: `Group '${id}' does not exist`, details: [] });
    const version = this.now();
    const steps: Action[] = [];
    for (const a of this.apps.keys()) if (a.startsWith(id === '/' ? '/' : `${id}/`)) steps.push({ action: 'StopApplication', app: a });
    for (const p of this.pods.keys()) if (p.startsWith(id === '/' ? '/' : `${id}/`)) steps.push({ action: 'StopPod', pod: p });
    const deploymentId = this.deploy(steps, version, () => this.removeGroupTree(id, []), parentOf(id));
    return { version, deploymentId };
  }

  private removeGroupTree(id: string, steps: Action[]): void {
    const prefix = id === '/' ? '/' : `${id}/`;
    for (const [a, rec] of [...this.apps]) if (a.startsWith(prefix)) {
      steps.push({ action: 'StopApplication', app: a });
      this.removeApp(a, rec);
    }
    for (const [p, rec] of [...this.pods]) if (p.startsWith(prefix)) {
      steps.push({ action: 'StopPod', pod: p });
      this.removePod(p, rec);
    }
    for (const g of [...this.groups.keys()]) if (g !== '/' && (g === id || g.startsWith(prefix))) this.groups.delete(g);
  }

  /**
   * Loads a `/v2/groups` dump (any group, placed at its own id) without events: for tests,
   * benchmarks and `marathon-sim --seed`. Throws ApiError(422) for an invalid definition.
   */
  seed(dump: Json): { apps: number; pods: number } {
    const emit = this.emit;
    this.emit = () => {};
    try {
      const r = this.updateGroup(isObj(dump) && typeof dump.id === 'string' ? resolveId(dump.id) : '/', dump, {});
      return { apps: r.steps.filter((s) => s.app).length, pods: r.steps.filter((s) => s.pod).length };
    } finally {
      this.emit = emit;
    }
  }

  /** Runs a deployment: its events around `apply`, all at once. */
  private deploy(actions: Action[], version: string, apply: () => void, groupId?: string): string {
    const id = this.uuid();
    const plan = () => ({ id, version, steps: actions.length ? [{ actions }] : [], original: { id: '/' }, target: { id: '/' } });
    const affected = actions.map((a) => a.app ?? a.pod!);
    const group = groupId ?? (affected.length ? parentOf(affected[0]) : '/');
    this.emit('deployment_info', () => ({ plan: plan(), currentStep: { actions } }));
    apply();
    const rootVersion = this.groups.get('/')!;
    rootVersion.version = version;
    this.emit('group_change_success', () => ({ groupId: group, version }));
    this.emit('deployment_step_success', () => ({ plan: plan(), currentStep: { actions } }));
    this.emit('deployment_success', () => ({ id, plan: plan() }));
    return id;
  }
}

/** AppInfo fields that are not part of a definition. */
function stripAppInfo(def: Obj): Obj {
  const out = { ...def };
  for (const f of ['version', 'versionInfo', 'tasks', 'tasksStaged', 'tasksRunning', 'tasksHealthy', 'tasksUnhealthy', 'deployments', 'lastTaskFailure']) delete out[f];
  return out;
}

/** True if two definitions differ in `instances` only (a scale, not a restart). */
function onlyScaling(a: Obj, b: Obj): boolean {
  const x = { ...stripAppInfo(a), instances: 0 };
  const y = { ...stripAppInfo(b), instances: 0 };
  return JSON.stringify(sortKeys(x)) === JSON.stringify(sortKeys(y));
}

/** `prod_api.instance-<uuid>._app.1` -> `prod_api.instance-<uuid>`; older ids are their own instance id. */
function instanceIdOf(taskId: string): string {
  return taskId.replace(/\._app\.\d+$/, '');
}

/** Marathon's healthCheckResults: one per check, the same result for each here; empty until the first check. */
function healthCheckResults(h: SimHealth | undefined, instanceId: string): Obj[] {
  if (h?.alive === undefined) return [];
  const result: Obj = { alive: h.alive, consecutiveFailures: h.consecutiveFailures, firstSuccess: h.firstSuccess ?? null, lastSuccess: h.lastSuccess ?? null, lastFailure: h.lastFailure ?? null, instanceId };
  if (h.lastFailureCause !== undefined) result.lastFailureCause = h.lastFailureCause;
  return Array.from({ length: h.checks }, () => ({ ...result }));
}

/** The endpoint a pod container's HTTP or TCP health check probes. */
function healthCheckEndpoint(hc: Obj): string | undefined {
  for (const kind of ['http', 'tcp']) {
    const probe = hc[kind];
    if (isObj(probe) && typeof probe.endpoint === 'string') return probe.endpoint;
  }
  return undefined;
}

function sortKeys(v: Json): Json {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
  return out;
}
