/**
 * Where callers reach a Marathon task or pod instance, by network mode: on a container network
 * at the container's IP and container port; in host networking and on the bridge at the agent
 * host and the host port Marathon allocated.
 */
import type { MarathonApp, MarathonNetwork, MarathonPod, MarathonPodInstance, MarathonPort, MarathonTask } from './model';

/** How a workload's containers are attached: `container` wins over bridge (Marathon lets an app join several container networks, never host with others). */
export type Attachment = 'host' | 'bridge' | 'container';

export function attachmentOf(networks: readonly MarathonNetwork[]): Attachment {
  if (networks.some((n) => n.mode === 'container')) return 'container';
  if (networks.some((n) => n.mode === 'container/bridge')) return 'bridge';
  return 'host';
}

/**
 * The port a workload serves on, one number for all its instances: the container port, else a
 * fixed host port, else the service port Marathon assigned (host networking: the definition's
 * port); 0 when there is none (a dynamic host port of a pod).
 */
export function servingPort(p: MarathonPort): number {
  return p.containerPort || p.hostPort || p.servicePort || 0;
}

/** Where one instance is reached; `ports` has one entry per workload port, 0 where it has none. */
export interface InstanceAddress {
  /** undefined while Marathon reports no address (a container network task without an IP yet) */
  address: string | undefined;
  ports: number[];
}

/** Prefers IPv4, as Mesos-DNS answers A records first. */
function preferIpv4(addresses: readonly string[]): string | undefined {
  return addresses.find((a) => !a.includes(':')) ?? addresses[0];
}

export function taskAddress(app: MarathonApp, attachment: Attachment, task: MarathonTask): InstanceAddress {
  if (attachment === 'container') {
    return { address: preferIpv4(task.ipAddresses.map((a) => a.ipAddress)), ports: app.ports.map(servingPort) };
  }
  if (attachment === 'host') return { address: task.host, ports: app.ports.map((_, i) => task.ports[i] ?? 0) };
  // bridge: task.ports lists the host ports of the mappings that have one, in order
  let next = 0;
  return { address: task.host, ports: app.ports.map((p) => (p.hostPort === undefined ? 0 : (task.ports[next++] ?? 0))) };
}

/** The endpoints of a pod's containers, in definition order (the pod's ports). */
export function podEndpoints(pod: MarathonPod): MarathonPort[] {
  return pod.containers.length === 1 ? pod.containers[0].endpoints : pod.containers.flatMap((c) => c.endpoints);
}

export function podInstanceAddress(pod: MarathonPod, attachment: Attachment, endpoints: readonly MarathonPort[], inst: MarathonPodInstance): InstanceAddress {
  if (attachment === 'container') {
    const wanted = pod.networks.find((n) => n.mode === 'container')?.name;
    const attached = inst.networks.filter((n) => n.addresses.length > 0);
    const net = attached.find((n) => n.name === wanted) ?? attached[0];
    return { address: net ? preferIpv4(net.addresses) : undefined, ports: endpoints.map(servingPort) };
  }
  const allocated = new Map<string, number>();
  for (const c of inst.containers) for (const e of c.endpoints) if (e.allocatedHostPort !== undefined) allocated.set(e.name, e.allocatedHostPort);
  return { address: inst.agentHostname, ports: endpoints.map((e) => (e.name !== undefined ? allocated.get(e.name) : undefined) ?? e.hostPort ?? 0) };
}
