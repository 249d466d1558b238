import type { LogEntry, Snapshot } from "@quorum/consensus";
import type { RecordedResult } from "@quorum/consensus/testing";
import { RecordingStateMachine } from "@quorum/consensus/testing";
import { type NodeContext, SimCluster, type SimDisk, type Simulation } from "@quorum/sim";
import type { Transport } from "@quorum/transport";
import { type LogStore, MemoryStorage, RaftNode, type RaftNodeOptions } from "../src/index.js";
import { type NodeView, SafetyChecker, SimDiskLogStore } from "../src/testing/index.js";

/**
 * A RecordingStateMachine whose `commands` list is kept up to date as it applies, instead of
 * being rebuilt from the whole history on every read: the invariants read it after every
 * scheduler step, and that rebuild (plus its garbage) was the largest single cost of a seed.
 * `resets` counts the times the list was replaced rather than appended to (a restore), so a
 * check that remembers how far it got knows when to start over.
 */
export class TrackedMachine extends RecordingStateMachine {
  private list: string[] = [];
  private resetCount = 0;

  /** The applied commands in apply order (the same list object until the next reset). */
  override get commands(): string[] {
    return this.list;
  }

  get resets(): number {
    return this.resetCount;
  }

  override apply(entries: readonly LogEntry[]): RecordedResult[] {
    try {
      const results = super.apply(entries);
      for (const e of entries) this.list.push(Buffer.from(e.command).toString("utf8"));
      return results;
    } catch (err) {
      this.resync(); // a partial apply: take the base class's list as it now is
      throw err;
    }
  }

  override async restore(snapshot: Snapshot): Promise<void> {
    try {
      await super.restore(snapshot);
    } finally {
      this.resync();
    }
  }

  private resync(): void {
    this.list = super.commands;
    this.resetCount++;
  }
}

export interface Durable {
  /** The log of the node's current (or last) incarnation. */
  readonly storage: LogStore;
  readonly machine: TrackedMachine;
}

/**
 * How many times each store was written (save or compact; see `counted`): a store whose
 * count has not moved holds the same log as when last read.
 */
const writes = new WeakMap<LogStore, number>();
const bumpWrites = (store: LogStore) => writes.set(store, (writes.get(store) ?? 0) + 1);

/**
 * `store` with its reads passed through and its writes replaced: the wrappers that count,
 * fence or delay a node's writes.
 */
export function withWrites(store: LogStore, writes: Pick<LogStore, "save" | "compact" | "close">): LogStore {
  return {
    hardState: () => store.hardState(),
    entries: (lo, hi, maxBytes) => store.entries(lo, hi, maxBytes),
    term: (i) => store.term(i),
    firstIndex: () => store.firstIndex(),
    lastIndex: () => store.lastIndex(),
    snapshot: () => store.snapshot(),
    configEntries: () => store.configEntries(),
    ...writes,
  };
}

/** `store`, with its writes counted in `writes`; every node's log is kept behind one. */
function counted(store: LogStore): LogStore {
  const wrapped: LogStore = withWrites(store, {
    save: (u) => {
      bumpWrites(wrapped);
      try {
        const done = store.save(u);
        // A store may finish the write (and move its view) only when its promise settles.
        if (done instanceof Promise) {
          done.then(
            () => bumpWrites(wrapped),
            () => bumpWrites(wrapped),
          );
        }
        return done;
      } finally {
        bumpWrites(wrapped);
      }
    },
    compact: (i) => {
      try {
        store.compact(i);
      } finally {
        bumpWrites(wrapped);
      }
    },
    close: () => store.close(),
  });
  return wrapped;
}

export interface SimRaftOptions {
  /**
   * Keep each node's log in a SimDiskLogStore on its SimDisk (reopened from the synced bytes
   * at every restart), instead of a MemoryStorage that survives crashes whole.
   */
  readonly disk?: boolean;
  /**
   * With `disk`: syncs take this many ms of the node's virtual time and run off its path
   * (SimDiskLogStore's `asyncSync`, as a writer thread would), so a leader's appends reach
   * followers while its own write is still unsynced (§10.2.1).
   */
  readonly syncDelayMs?: (ctx: NodeContext) => number;
  /** With `disk`: wraps the incarnation's store (e.g. to plant a late-sync bug). */
  readonly wrapStore?: (store: SimDiskLogStore, ctx: NodeContext) => LogStore;
  /**
   * Give every node a transport that reports connection events as GrpcTransport's `onEvent`
   * does: 0–3 ms after a node crashes, each live node sees its stream end (the OS reset its
   * connections), so RaftNode's early election runs. Until `falseAlarmsUntilMs` (virtual
   * time), now and then a random node also sees a live peer's stream end (a broken link).
   */
  readonly connectionEvents?: { readonly falseAlarmsUntilMs: number };
}

type ConnectionListener = (event: { readonly type: string; readonly peer: string }) => void;

/** `t` with GrpcTransport's `onEvent`, fed from `listeners`. */
function withConnectionEvents(t: Transport, listeners: Set<ConnectionListener>): Transport {
  const wrapped: Transport & { onEvent(l: ConnectionListener): () => void } = {
    get localId() {
      return t.localId;
    },
    send: (to, channel, payload) => t.send(to, channel, payload),
    subscribe: (channel, handler) => t.subscribe(channel, handler),
    addPeer: (peer) => t.addPeer(peer),
    removePeer: (id) => t.removePeer(id),
    peers: () => t.peers(),
    stats: () => t.stats(),
    close: () => t.close(),
    onEvent(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  return wrapped;
}

/** The file name of a node's log on its SimDisk. */
export const LOG_FILE = "raft.log";

/** A LogStore that a crashed incarnation can no longer write (its leftover code is fenced). */
export function fenced(store: LogStore, dead: () => boolean): LogStore {
  const check = () => {
    if (dead()) throw new Error("write from a crashed incarnation");
  };
  return withWrites(store, {
    save: (u) => {
      check();
      return store.save(u);
    },
    compact: (i) => {
      check();
      store.compact(i);
    },
    close: () => {},
  });
}

export interface SimRaft {
  readonly cluster: SimCluster<RaftNode<RecordedResult>>;
  readonly durable: Map<string, Durable>;
  node(id: string): RaftNode<RecordedResult>;
  leader(): string | undefined;
  commands(id: string): string[];
}

/**
 * RaftNodes on a Simulation: storage and state machines survive crashes (a save is atomic and
 * durable, as SqliteLogStore's transaction is); an error logged by a node fails the run.
 */
export function simRaft(
  sim: Simulation,
  ids: readonly string[],
  extra: (ctx: NodeContext) => Partial<RaftNodeOptions<RecordedResult>> = () => ({}),
  initial: readonly string[] = ids,
  options: SimRaftOptions = {},
): SimRaft {
  const durable = new Map<string, { storage: LogStore; machine: TrackedMachine }>();
  const bootstrap = initial.map((p) => ({ id: p, address: p, learner: false }));
  for (const id of ids) {
    durable.set(id, {
      storage: counted(initial.includes(id) ? MemoryStorage.bootstrap(bootstrap) : new MemoryStorage()),
      machine: new TrackedMachine(),
    });
  }
  const connectionListeners = new Map<string, Set<ConnectionListener>>();
  const cluster = new SimCluster<RaftNode<RecordedResult>>(sim, ids, async (ctx) => {
    const d = durable.get(ctx.id)!;
    let transport = ctx.transport;
    if (options.connectionEvents) {
      const listeners = new Set<ConnectionListener>(); // this incarnation's
      connectionListeners.set(ctx.id, listeners);
      transport = withConnectionEvents(transport, listeners);
    }
    if (options.disk) {
      // Only what was synced survived the last crash (SimDisk): reopen the log from it.
      const delay = options.syncDelayMs;
      const store = new SimDiskLogStore(ctx.disk.file(LOG_FILE), {
        ...(initial.includes(ctx.id) ? { initialMembers: bootstrap } : {}),
        ...(delay ? { asyncSync: { clock: ctx.clock, syncDelayMs: () => delay(ctx) } } : {}),
      });
      d.storage = counted(options.wrapStore ? options.wrapStore(store, ctx) : store);
    }
    const clock = ctx.clock as NodeContext["clock"] & { isDead(): boolean };
    const node = new RaftNode<RecordedResult>({
      id: ctx.id,
      // A node outside the initial configuration joins: it must reach the members to answer them.
      peers: initial.includes(ctx.id) ? [] : initial.map((p) => ({ id: p, address: p })),
      join: !initial.includes(ctx.id),
      transport,
      clock: ctx.clock,
      storage: fenced(d.storage, () => clock.isDead()),
      stateMachine: d.machine,
      random: ctx.prng.random(),
      tickMs: 10,
      electionTicks: 10,
      defaultTimeoutMs: 500,
      logger: {
        debug: () => {},
        info: () => {},
        warn: () => {},
        error: (obj, msg) => sim.fail(new Error(`${ctx.id}: ${msg} ${JSON.stringify(obj)}`)),
      },
      ...extra(ctx),
    });
    await node.start();
    return node;
  });
  if (options.connectionEvents) {
    const prng = sim.prng.fork("connection-events");
    /** `id` sees `peer`'s stream end, `ms` from now, if `id` is still the same incarnation. */
    const disconnect = (id: string, peer: string, ms: number) => {
      const clock = cluster.clockFor(id);
      const listeners = connectionListeners.get(id);
      if (!clock || !listeners || !cluster.isUp(id)) return;
      clock.schedule(ms, () => {
        for (const l of [...listeners]) l({ type: "disconnected", peer });
      });
    };
    const crash = cluster.crash.bind(cluster);
    cluster.crash = (id) => {
      const wasUp = cluster.isUp(id);
      crash(id);
      if (wasUp) for (const other of cluster.up()) disconnect(other, id, prng.int(0, 3));
    };
    const { falseAlarmsUntilMs } = options.connectionEvents;
    const falseAlarm = () => {
      if (sim.now() >= falseAlarmsUntilMs) return;
      const up = cluster.up();
      if (up.length >= 2) {
        // Mostly a follower losing its link to the leader: the case the early election acts on.
        const leader = up.find((p) => cluster.runtime(p)?.status().role === "leader");
        const id = prng.pick(up.filter((p) => p !== leader));
        const peer = leader && prng.next() < 0.7 ? leader : prng.pick(up.filter((p) => p !== id));
        disconnect(id, peer, 0);
      }
      sim.clock.schedule(prng.int(50, 300), falseAlarm);
    };
    sim.clock.schedule(prng.int(50, 300), falseAlarm);
  }
  const node = (id: string) => {
    const n = cluster.runtime(id);
    if (!n) throw new Error(`${id} is down`);
    return n;
  };
  return {
    cluster,
    durable,
    node,
    leader() {
      let best: [string, number] | undefined;
      for (const [id, n] of cluster.runtimes()) {
        const s = n.status();
        if (s.role === "leader" && (!best || s.term > best[1])) best = [id, s.term];
      }
      return best?.[0];
    },
    commands: (id) => durable.get(id)!.machine.commands,
  };
}

/** Tracks a promise's outcome so a simulation can run until it settles. */
export function track<T>(p: Promise<T>): { done: boolean; value?: T; error?: unknown } {
  const t: { done: boolean; value?: T; error?: unknown } = { done: false };
  p.then(
    (v) => {
      t.done = true;
      t.value = v;
    },
    (e: unknown) => {
      t.done = true;
      t.error = e;
    },
  );
  return t;
}

/**
 * Checks the five safety properties of Figure 3 after every scheduler step, over what each
 * live node has persisted, and that every replica applied a prefix of one command sequence.
 */
export function addSafetyInvariant(sim: Simulation, r: SimRaft): void {
  const checker = new SafetyChecker();
  /**
   * Each node's view as the checker last saw it, with what it was built from (the node's
   * store and its write count). Most steps (a tick, a heartbeat) change no node's persisted
   * log, term, role or commit index, and one step seldom changes more than one node.
   *
   * The checker keeps every property as history (terms' leaders, each leader's log, committed
   * entries with the term of their first reporter, entry signatures, entry objects already
   * matched), so showing it a view it has already seen adds nothing and cannot fail where it
   * passed — except leader completeness: a leader must hold every entry committed since, as
   * first reported by a node of a lower term than the leader's. So after every step the
   * checker sees the views that changed, plus each unchanged leader whose term is above a
   * changed view's (only those views can report entries it must hold); a step that changed
   * nothing shows it nothing, and an unchanged log is not re-read. (Showing every view after
   * every step made the checks of the leaders, passes over their logs and every committed
   * index, plus rebuilding the applied lists, two thirds of a seed's time.)
   */
  const seen = new Map<string, { key: string; store: LogStore; writes: number; view: NodeView }>();
  const reference: string[] = [];
  /** How much of each node's applied list is known to match `reference`. */
  const matched = new Map<string, { resets: number; n: number }>();
  sim.addInvariant("raft safety (Figure 3)", () => {
    const show: NodeView[] = [];
    const unchangedLeaders: NodeView[] = [];
    let lowestChangedTerm = Number.POSITIVE_INFINITY;
    for (const [id, node] of r.cluster.runtimes()) {
      const s = node.coreStatus();
      if (!s) continue;
      const { storage } = r.durable.get(id)!;
      const storeWrites = writes.get(storage) ?? 0;
      // The view is the persisted log: while a save is in flight the core may already have
      // committed entries that replace stored ones (a follower's truncation), so count as
      // committed only what is persisted.
      const commitIndex = Math.min(s.commitIndex, s.stableIndex, storage.lastIndex());
      const key = `${s.role} ${s.term} ${commitIndex}`;
      const prev = seen.get(id);
      const sameLog = prev !== undefined && prev.store === storage && prev.writes === storeWrites;
      if (sameLog && prev.key === key) {
        if (s.role === "leader") unchangedLeaders.push(prev.view);
        continue;
      }
      let view: NodeView;
      if (sameLog) view = { ...prev.view, role: s.role, term: s.term, commitIndex };
      else {
        const first = storage.firstIndex();
        view = {
          id,
          role: s.role,
          term: s.term,
          commitIndex,
          firstIndex: first,
          entries: storage.entries(first, storage.lastIndex() + 1),
          snapshotTerm: storage.term(first - 1) ?? 0,
        };
      }
      seen.set(id, { key, store: storage, writes: storeWrites, view });
      show.push(view);
      lowestChangedTerm = Math.min(lowestChangedTerm, s.term);
    }
    if (show.length > 0) {
      for (const l of unchangedLeaders) if (l.term > lowestChangedTerm) show.push(l);
      checker.observe(show);
    }
    for (const [id, d] of r.durable) {
      const commands = d.machine.commands;
      let m = matched.get(id);
      if (m === undefined || m.resets !== d.machine.resets || m.n > commands.length) {
        m = { resets: d.machine.resets, n: 0 };
        matched.set(id, m);
      }
      const n = Math.min(commands.length, reference.length);
      for (let k = m.n; k < n; k++) {
        if (commands[k] !== reference[k])
          return `${id} applied ${commands[k]} at position ${k}, another ${reference[k]}`;
      }
      for (let k = reference.length; k < commands.length; k++) reference.push(commands[k]!);
      m.n = commands.length;
    }
    return undefined;
  });
}

/**
 * The log `disk` would recover right now (its synced bytes only), read-only. With torn
 * writes a crash may later keep more, never less.
 */
export function durableLog(disk: SimDisk): SimDiskLogStore {
  const bytes = disk.durableContents(LOG_FILE) ?? new Uint8Array(0);
  return new SimDiskLogStore({
    read: () => bytes,
    size: () => bytes.byteLength,
    append: () => {},
    writeAll: () => {},
    truncate: () => {},
    sync: () => {},
  });
}

/**
 * Every acknowledged command (by index) is durable — in the synced log, or covered by its
 * snapshot — on a majority of the nodes. It must hold at every instant: a leader acknowledges
 * only what a quorum has persisted, and voting configurations here never shrink below four, so
 * a quorum is always at least a majority of `ids`. A runtime that acknowledges (or acks an
 * append) before its write is synced breaks it as soon as a crash loses that write.
 */
export function assertDurableMajority(r: SimRaft, ackedAt: ReadonlyMap<number, string>): void {
  const ids = r.cluster.ids;
  const logs = ids.map((id) => durableLog(r.cluster.disk(id)));
  const need = Math.floor(ids.length / 2) + 1;
  for (const [index, command] of ackedAt) {
    let holders = 0;
    for (const log of logs) {
      if (index <= log.snapshot().index) holders++;
      else if (index <= log.lastIndex()) {
        const [e] = log.entries(index, index + 1);
        if (e && Buffer.from(e.data).toString("utf8") === command) holders++;
      }
    }
    if (holders < need) {
      throw new Error(
        `acknowledged ${command} at index ${index} is durable on only ${holders} of ${ids.length} nodes`,
      );
    }
  }
}

/** Runs `assertDurableMajority` right after every crash (failing the simulation if it breaks). */
export function checkDurableMajorityAtCrashes(
  sim: Simulation,
  r: SimRaft,
  ackedAt: ReadonlyMap<number, string>,
): void {
  const crash = r.cluster.crash.bind(r.cluster);
  r.cluster.crash = (id) => {
    crash(id);
    try {
      assertDurableMajority(r, ackedAt);
    } catch (err) {
      sim.fail(err);
    }
  };
}
