import type { Clock, NodeId, Transport } from "@quorum/transport";
import { SimDisk } from "./disk.js";
import { NO_FAULTS } from "./network.js";
import type { Prng } from "./prng.js";
import type { SimTimer } from "./scheduler.js";
import { NodeClock } from "./sim-clock.js";
import type { Simulation } from "./simulation.js";

/** What a node runtime gets from the simulator: the same things it gets in production. */
export interface NodeContext {
  readonly id: NodeId;
  /** 1 for the first start, +1 on every restart. */
  readonly incarnation: number;
  readonly clock: Clock;
  readonly transport: Transport;
  /** Survives crashes; only synced data survives them. */
  readonly disk: SimDisk;
  /** This incarnation's own stream (e.g. for election jitter). */
  readonly prng: Prng;
  /** Every other node of the cluster, for `transport.addPeer`. */
  readonly peers: readonly NodeId[];
}

/** Builds a runtime; called at start and at every restart (with the surviving disk). */
export type NodeFactory<R> = (ctx: NodeContext) => R | Promise<R>;

interface NodeSlot<R> {
  readonly disk: SimDisk;
  incarnation: number;
  clock: NodeClock | undefined;
  runtime: R | undefined;
  up: boolean;
}

/**
 * Simulated nodes of one cluster. `crash` stops a node abruptly: no close or stop callback
 * runs, its timers are cancelled and can never fire, its transport goes dark, and its disk
 * loses unsynced writes. `restart` calls the factory again with the surviving disk.
 */
export class SimCluster<R> {
  private readonly slots = new Map<NodeId, NodeSlot<R>>();
  private nemesis: Nemesis<R> | undefined;

  constructor(
    readonly sim: Simulation,
    readonly ids: readonly NodeId[],
    private readonly factory: NodeFactory<R>,
  ) {
    if (new Set(ids).size !== ids.length) throw new RangeError("node ids must be unique");
    for (const id of ids) {
      this.slots.set(id, {
        disk: new SimDisk(sim.prng.fork(`disk/${id}`), sim.diskOptions),
        incarnation: 0,
        clock: undefined,
        runtime: undefined,
        up: false,
      });
    }
  }

  /** Starts every node that is not up. */
  async start(): Promise<void> {
    for (const id of this.ids) if (!this.isUp(id)) await this.restart(id);
  }

  runtime(id: NodeId): R | undefined {
    return this.slot(id).runtime;
  }

  /** Runtimes of the nodes that are up, by id. */
  runtimes(): Map<NodeId, R> {
    const out = new Map<NodeId, R>();
    for (const [id, s] of this.slots) if (s.up && s.runtime !== undefined) out.set(id, s.runtime);
    return out;
  }

  isUp(id: NodeId): boolean {
    return this.slot(id).up;
  }

  up(): NodeId[] {
    return this.ids.filter((id) => this.isUp(id));
  }

  down(): NodeId[] {
    return this.ids.filter((id) => !this.isUp(id));
  }

  disk(id: NodeId): SimDisk {
    return this.slot(id).disk;
  }

  /** The clock of `id`'s current incarnation (its timers die with it). */
  clockFor(id: NodeId): NodeClock | undefined {
    return this.slot(id).clock;
  }

  crash(id: NodeId): void {
    const s = this.slot(id);
    if (!s.up) return;
    s.up = false;
    s.clock?.crash();
    this.sim.network.crash(id);
    s.disk.crash();
    s.runtime = undefined;
  }

  /** Starts a new incarnation of `id` (crashing the current one first if it is up). */
  async restart(id: NodeId): Promise<R> {
    const s = this.slot(id);
    if (s.up) this.crash(id);
    s.incarnation++;
    const clock = new NodeClock(this.sim.scheduler, `${id}#${s.incarnation}`);
    s.clock = clock;
    s.up = true;
    const ctx: NodeContext = {
      id,
      incarnation: s.incarnation,
      clock,
      transport: this.sim.network.transport(id),
      disk: s.disk,
      prng: this.sim.prng.fork(`node/${id}/${s.incarnation}`),
      peers: this.ids.filter((p) => p !== id),
    };
    const runtime = await this.factory(ctx);
    // The node may have crashed while an async factory was still loading.
    if (s.clock === clock && s.up) s.runtime = runtime;
    return runtime;
  }

  /** Starts random faults (crashes, restarts, partitions, swizzles) for the safety phase. */
  startNemesis(options: NemesisOptions = {}): Nemesis<R> {
    this.nemesis?.stop();
    this.nemesis = new Nemesis(this, options);
    this.nemesis.start();
    return this.nemesis;
  }

  /**
   * Ends the safety phase: stops the nemesis, heals the network, turns off drops and
   * duplicates, restarts every crashed node. Progress must follow from here.
   */
  async livenessPhase(): Promise<void> {
    this.nemesis?.stop();
    this.nemesis = undefined;
    this.sim.network.heal();
    this.sim.network.setFaults(NO_FAULTS);
    for (const id of this.down()) await this.restart(id);
  }

  private slot(id: NodeId): NodeSlot<R> {
    const s = this.slots.get(id);
    if (!s) throw new RangeError(`unknown node ${id}`);
    return s;
  }
}

export interface NemesisOptions {
  /** Virtual ms between fault actions, drawn uniformly. Default [50, 500]. */
  intervalMs?: [number, number];
  /** How long a crashed node stays down. Default [0, 1000]. */
  downMs?: [number, number];
  /** At most this many nodes down at once. Default: a minority. */
  maxDown?: number;
  /** Which faults to inject; all on by default. */
  crash?: boolean;
  partition?: boolean;
  swizzle?: boolean;
}

/**
 * Random faults scheduled on virtual time from the seed. Keeping at most a minority down by
 * default lets a correct protocol make progress once the liveness phase begins.
 */
export class Nemesis<R> {
  private timer: SimTimer | undefined;
  private readonly prng: Prng;
  private readonly restarts = new Set<SimTimer>();
  private stopped = false;
  readonly log: string[] = [];

  constructor(
    private readonly cluster: SimCluster<R>,
    private readonly options: NemesisOptions,
  ) {
    this.prng = cluster.sim.prng.fork("nemesis");
  }

  start(): void {
    this.stopped = false;
    this.scheduleNext();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    for (const t of this.restarts) t.cancel();
    this.restarts.clear();
  }

  private scheduleNext(): void {
    const [lo, hi] = this.options.intervalMs ?? [50, 500];
    this.timer = this.cluster.sim.scheduler.schedule(this.prng.int(lo, hi), () => this.act(), "nemesis");
  }

  private act(): void {
    if (this.stopped) return;
    const { sim, ids } = this.cluster;
    const actions: (() => void)[] = [];
    const maxDown = this.options.maxDown ?? Math.floor((ids.length - 1) / 2);
    if (this.options.crash !== false && this.cluster.down().length < maxDown) {
      actions.push(() => {
        const id = this.prng.pick(this.cluster.up());
        this.log.push(`${sim.now()} crash ${id}`);
        this.cluster.crash(id);
        const [lo, hi] = this.options.downMs ?? [0, 1000];
        const t = sim.scheduler.schedule(
          this.prng.int(lo, hi),
          () => {
            this.restarts.delete(t);
            if (this.cluster.isUp(id)) return;
            this.log.push(`${sim.now()} restart ${id}`);
            this.cluster.restart(id).catch((e) => sim.fail(e));
          },
          "nemesis-restart",
        );
        this.restarts.add(t);
      });
    }
    if (this.options.partition !== false && ids.length > 1) {
      actions.push(() => {
        const shuffled = this.prng.shuffle([...ids]);
        const cut = this.prng.int(1, ids.length - 1);
        const groups = [shuffled.slice(0, cut), shuffled.slice(cut)];
        this.log.push(`${sim.now()} partition ${JSON.stringify(groups)}`);
        sim.network.heal();
        sim.network.partition(groups);
      });
      actions.push(() => {
        this.log.push(`${sim.now()} heal`);
        sim.network.heal();
      });
    }
    if (this.options.swizzle !== false && ids.length > 1) {
      actions.push(() => {
        this.log.push(`${sim.now()} swizzle`);
        sim.network.swizzle({ count: this.prng.int(1, ids.length), stepMs: this.prng.int(10, 100) });
      });
    }
    if (actions.length > 0) this.prng.pick(actions)();
    this.scheduleNext();
  }
}
