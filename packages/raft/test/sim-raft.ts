import type { RecordedResult } from "@quorum/consensus/testing";
import { RecordingStateMachine } from "@quorum/consensus/testing";
import { type NodeContext, SimCluster, type Simulation } from "@quorum/sim";
import { type LogStore, MemoryStorage, RaftNode, type RaftNodeOptions } from "../src/index.js";
import { SafetyChecker } from "../src/testing/index.js";

export interface Durable {
  readonly storage: MemoryStorage;
  readonly machine: RecordingStateMachine;
}

/** A LogStore that a crashed incarnation can no longer write (its leftover code is fenced). */
export function fenced(store: LogStore, dead: () => boolean): LogStore {
  const check = () => {
    if (dead()) throw new Error("write from a crashed incarnation");
  };
  return {
    hardState: () => store.hardState(),
    entries: (lo, hi, maxBytes) => store.entries(lo, hi, maxBytes),
    term: (i) => store.term(i),
    firstIndex: () => store.firstIndex(),
    lastIndex: () => store.lastIndex(),
    snapshot: () => store.snapshot(),
    configEntries: () => store.configEntries(),
    save: (u) => {
      check();
      store.save(u);
    },
    compact: (i) => {
      check();
      store.compact(i);
    },
    close: () => {},
  };
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
): SimRaft {
  const durable = new Map<string, Durable>();
  for (const id of ids) {
    durable.set(id, {
      storage: initial.includes(id)
        ? MemoryStorage.bootstrap(initial.map((p) => ({ id: p, address: p, learner: false })))
        : new MemoryStorage(),
      machine: new RecordingStateMachine(),
    });
  }
  const cluster = new SimCluster<RaftNode<RecordedResult>>(sim, ids, async (ctx) => {
    const d = durable.get(ctx.id)!;
    const clock = ctx.clock as NodeContext["clock"] & { isDead(): boolean };
    const node = new RaftNode<RecordedResult>({
      id: ctx.id,
      // A node outside the initial configuration joins: it must reach the members to answer them.
      peers: initial.includes(ctx.id) ? [] : initial.map((p) => ({ id: p, address: p })),
      join: !initial.includes(ctx.id),
      transport: ctx.transport,
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
  let reference: string[] = [];
  sim.addInvariant("raft safety (Figure 3)", () => {
    const views = [];
    for (const [id, node] of r.cluster.runtimes()) {
      const s = node.coreStatus();
      if (!s) continue;
      const { storage } = r.durable.get(id)!;
      const first = storage.firstIndex();
      views.push({
        id,
        role: s.role,
        term: s.term,
        commitIndex: Math.min(s.commitIndex, storage.lastIndex()),
        firstIndex: first,
        entries: storage.entries(first, storage.lastIndex() + 1),
        snapshotTerm: storage.term(first - 1) ?? 0,
      });
    }
    checker.observe(views);
    for (const [id, d] of r.durable) {
      const commands = d.machine.commands;
      const n = Math.min(commands.length, reference.length);
      for (let i = 0; i < n; i++) {
        if (commands[i] !== reference[i])
          return `${id} applied ${commands[i]} at position ${i}, another ${reference[i]}`;
      }
      if (commands.length > reference.length) reference = [...commands];
    }
    return undefined;
  });
}
