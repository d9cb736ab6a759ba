/**
 * The mesh's services, kept current from the Marathon view: one MeshService per app and pod with
 * a valid identity. Each change makes a new MeshSnapshot with a new version, in which only the
 * services that changed are new objects (generators memoize on identity); the work is per
 * changed app or pod, plus about √n for the shared maps (layered-map.ts).
 */
import { isDeepStrictEqual } from 'node:util';
import { Counter, Gauge, type Registry } from 'prom-client';
import { silentLogger, type Logger } from '../common/log';
import type { MarathonView, ViewChange } from '../marathon/view';
import { isInvalid, type Workload } from '../marathon/workload';
import { LayeredMap } from './layered-map';
import type { MeshService, MeshSnapshot } from './model';
import { meshServiceOf, type ServiceWarning } from './service-of';

/** What MeshServices reads of the view. */
export type WorkloadSource = Pick<MarathonView, 'workloads' | 'get' | 'onChange'>;

export interface MeshServicesOptions {
  logger?: Logger;
  /** registers citadel_mesh_* metrics (services, services with warnings) when given */
  registry?: Registry;
}

/** A service's current warnings (a bad upstreams label, ports left out). */
export interface MeshServiceWarning extends ServiceWarning {
  marathonId: string;
}

class Snapshot implements MeshSnapshot {
  constructor(
    readonly version: number,
    readonly services: LayeredMap<string, MeshService>,
    /** Mesos-DNS name -> Marathon id, for the names exactly one service has */
    readonly byDnsName: LayeredMap<string, string>,
  ) {}

  lookup(name: string): MeshService | undefined {
    if (name.startsWith('/')) return this.services.get(name);
    const id = this.byDnsName.get(name.toLowerCase());
    return id === undefined ? undefined : this.services.get(id);
  }
}

type WorkloadRef = { readonly kind: 'app' | 'pod'; readonly id: string };

export class MeshServices {
  private current: Snapshot;
  /** the view entry each service was made from: an entry the view did not replace keeps its service */
  private readonly sources = new Map<string, Workload>();
  /** Mesos-DNS name -> the Marathon ids that have it (two can: `/a-b/c` and `/b/c-a`) */
  private readonly dnsOwners = new Map<string, Set<string>>();
  private readonly warned = new Map<string, ServiceWarning[]>();
  private readonly listeners = new Set<(snapshot: MeshSnapshot) => void>();
  private readonly log: Logger;
  private readonly warningsReported?: Counter;
  private readonly unsubscribe: () => void;

  constructor(private readonly view: WorkloadSource, opts: MeshServicesOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    if (opts.registry) {
      const self = this;
      new Gauge({
        name: 'citadel_mesh_services',
        help: 'Mesh services (Marathon apps and pods with a valid identity) in the current snapshot.',
        registers: [opts.registry],
        collect() {
          this.set(self.current.services.size);
        },
      });
      new Gauge({
        name: 'citadel_mesh_services_with_warnings',
        help: 'Mesh services with something left out: a bad citadel.io/upstreams label, or a port the mesh cannot proxy.',
        registers: [opts.registry],
        collect() {
          this.set(self.warned.size);
        },
      });
      this.warningsReported = new Counter({
        name: 'citadel_mesh_service_warnings_reported_total',
        help: 'Times a service was found (or changed) with a bad upstreams label or a port left out.',
        registers: [opts.registry],
      });
    }
    const empty = new Snapshot(0, LayeredMap.of(), LayeredMap.of());
    this.current = this.next(empty, view.workloads()) ?? new Snapshot(1, empty.services, empty.byDnsName);
    this.unsubscribe = view.onChange((change) => this.update(change));
  }

  /** The current snapshot; replaced, never changed. */
  get snapshot(): MeshSnapshot {
    return this.current;
  }

  /** Called with each new snapshot, synchronously after the view change that made it; returns the unsubscribe function. */
  onSnapshot(listener: (snapshot: MeshSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** What is left out of which service now. */
  warnings(): MeshServiceWarning[] {
    const out: MeshServiceWarning[] = [];
    for (const [marathonId, ws] of this.warned) for (const w of ws) out.push({ marathonId, ...w });
    return out;
  }

  /** Stops following the view. */
  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  private update(change: ViewChange): void {
    const next = this.next(this.current, change.workloads);
    if (!next) return;
    this.current = next;
    for (const l of [...this.listeners]) {
      try {
        l(next);
      } catch (err) {
        this.log.error('mesh snapshot listener failed', { error: String(err) });
      }
    }
  }

  /** The snapshot after `changed`, or undefined when no service changed; costs about the changed services, not all. */
  private next(prev: Snapshot, changed: readonly WorkloadRef[]): Snapshot | undefined {
    const services = new Map<string, MeshService | undefined>();
    const names = new Map<string, string | undefined>();
    for (const { kind, id } of changed) {
      const entry = this.view.get(kind, id);
      const w = entry === undefined || isInvalid(entry) ? undefined : entry;
      const source = this.sources.get(id);
      if (w === source) continue;
      // Marathon keeps app and pod ids apart: removing one kind must not drop the other's service
      if (w === undefined && source !== undefined && source.kind !== kind) continue;
      const before = services.has(id) ? services.get(id) : prev.services.get(id);
      const after = w === undefined ? undefined : this.serviceOf(w, before);
      if (w === undefined) this.sources.delete(id);
      else this.sources.set(id, w);
      if (after === before) continue;
      services.set(id, after);
      // the name is a function of the id: only an added or removed service moves it
      if (!before || !after) this.ownDnsName((after ?? before)!.dnsName, id, after !== undefined, names);
    }
    if (services.size === 0) return undefined;
    return new Snapshot(prev.version + 1, prev.services.with(services), names.size ? prev.byDnsName.with(names) : prev.byDnsName);
  }

  /** The service for `w`; `before` itself when nothing the mesh reads changed (a staging task, say). */
  private serviceOf(w: Workload, before: MeshService | undefined): MeshService {
    const { service, warnings } = meshServiceOf(w);
    this.report(w.id, warnings);
    return before !== undefined && isDeepStrictEqual(before, service) ? before : service;
  }

  /** Records who has the name now, and what it resolves to (`names`: undefined resolves to nothing). */
  private ownDnsName(name: string, id: string, owns: boolean, names: Map<string, string | undefined>): void {
    let owners = this.dnsOwners.get(name);
    if (owns) {
      if (!owners) this.dnsOwners.set(name, (owners = new Set()));
      owners.add(id);
    } else {
      this.report(id, []);
      owners?.delete(id);
      if (owners?.size === 0) this.dnsOwners.delete(name);
    }
    names.set(name, owners && owners.size === 1 ? owners.values().next().value! : undefined);
    if (owners && owners.size > 1) this.log.warn('mesh services share a Mesos-DNS name; it resolves to none of them, name them by Marathon id', { dnsName: name, marathonIds: [...owners].sort() });
  }

  /** Logs and counts a service's warnings when they differ from what was last reported for it. */
  private report(id: string, warnings: ServiceWarning[]): void {
    const before = this.warned.get(id);
    if (warnings.length === 0) {
      this.warned.delete(id);
      return;
    }
    this.warned.set(id, warnings);
    if (before && isDeepStrictEqual(before, warnings)) return;
    for (const w of warnings) this.log.warn(w.kind === 'upstreams' ? 'mesh service upstreams label ignored' : 'mesh service port left out', { marathonId: id, reason: w.message });
    this.warningsReported?.inc();
  }
}
