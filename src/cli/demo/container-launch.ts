/**
 * How a Mesos agent would start one container of a running Marathon pod instance, for this
 * machine, which has no containers: its shell command with every volume mount resolved to the
 * host path the mount would show (a mount makes `<host>` appear at `<mountPath>`; without a mount
 * namespace the command is given `<host>` where it says `<mountPath>`), and the environment Mesos
 * gives a task (the pod's and the container's `environment`, MESOS_CONTAINER_IP, MESOS_TASK_ID).
 */
import { isJsonObject, type JsonValue } from '../../common/json';
import { JsonReader } from '../../inject/json-reader';
import { MarathonParseError, parsePod } from '../../marathon/model';

export interface HostMount {
  /** where the container sees it */
  mountPath: string;
  /** what the Mesos agent mounts there, as this machine sees it */
  hostPath: string;
}

/** Where this machine sees a path of the agent `host` (the same path when the agent is this machine). */
export type LocalPath = (host: string, hostPath: string) => string;

export interface ContainerLaunch {
  podId: string;
  instanceId: string;
  /** the agent the instance runs on */
  agentHostname: string;
  /** the instance's address on its container network */
  containerIp: string;
  /** `exec.command.shell`, mounts resolved */
  shell: string;
  env: Record<string, string>;
  mounts: HostMount[];
}

/**
 * The launch of container `containerName` of the first instance in a PodStatus
 * (`GET /v2/pods/<id>::status`), whose `spec` is the definition as Marathon keeps it. Throws
 * MarathonParseError (JSON path, reason) when the status has no instance on a container network
 * or the container has no shell command or mounts a volume that is not a host path.
 */
export function containerLaunchOf(status: JsonValue, containerName: string, localPath: LocalPath = (_, p) => p): ContainerLaunch {
  const pod = parsePod(status);
  const instance = pod.podInstances[0];
  if (!instance) throw new MarathonParseError('/instances', `pod ${pod.id} has no instance yet`);
  const containerIp = instance.networks.flatMap((n) => n.addresses)[0];
  if (containerIp === undefined) throw new MarathonParseError('/instances(0)/networks', `instance ${instance.id} has no container IP; run the pod on a container network`);

  const spec = JsonReader.of(isJsonObject(status) ? status.spec : undefined, '/spec');
  const container = spec.objects('containers').find((c) => c.json.name === containerName);
  if (!container) throw new MarathonParseError('/spec/containers', `pod ${pod.id} has no container named "${containerName}"`);
  const shell = container.optObj('exec')?.optObj('command')?.optStr('shell');
  if (shell === undefined) throw new MarathonParseError(`${container.path}/exec/command/shell`, 'is missing; only shell commands are launched here');

  const hostPaths = new Map(spec.objects('volumes').map((v) => [v.str('name'), v.optStr('host')] as const));
  const mounts = container.objects('volumeMounts').map((m): HostMount => {
    const name = m.str('name');
    const hostPath = hostPaths.get(name);
    if (hostPath === undefined) return m.fail('name', `volume "${name}" is not a host volume; only host volumes can be resolved on this machine`);
    return { mountPath: m.str('mountPath'), hostPath: localPath(instance.agentHostname, hostPath) };
  });
  const env: Record<string, string> = {};
  for (const source of [spec.optObj('environment'), container.optObj('environment')]) {
    for (const [k, v] of Object.entries(source?.json ?? {})) if (typeof v === 'string') env[k] = v; // secrets have no value here
  }
  env.MESOS_CONTAINER_IP = containerIp;
  env.MESOS_TASK_ID = `${instance.id}.${containerName}`; // Marathon names a pod container's Mesos task <instance>.<container>
  return { podId: pod.id, instanceId: instance.id, agentHostname: instance.agentHostname, containerIp, shell: resolveMounts(shell, mounts), env, mounts };
}

/** `text` with each mount path (longest first, so nested mounts resolve to their own volume) replaced by its host path. */
export function resolveMounts(text: string, mounts: readonly HostMount[]): string {
  let out = text;
  for (const m of [...mounts].sort((a, b) => b.mountPath.length - a.mountPath.length)) {
    if (/['"\\$`\s]/.test(m.hostPath)) throw new Error(`host path ${JSON.stringify(m.hostPath)} has characters a shell command cannot carry unquoted; use a plain directory`);
    out = out.split(m.mountPath.replace(/\/+$/, '')).join(m.hostPath.replace(/\/+$/, ''));
  }
  return out;
}
