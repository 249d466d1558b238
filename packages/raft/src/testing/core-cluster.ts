import { seededRandom } from "@quorum/transport";
import { Raft, type RaftConfig, type Ready } from "../core/raft.js";
import { type LogStore, MemoryStorage } from "../core/storage.js";
import type { Entry, Message, NodeId, RaftMember, ReadState } from "../core/types.js";
import { SafetyChecker } from "./safety.js";

export interface CoreNode {
  readonly id: NodeId;
  raft: Raft;
  readonly storage: LogStore;
  /** What the test state machine has applied, in order (durable: survives a crash). */
  applied: Entry[];
  readStates: ReadState[];
  alive: boolean;
}

export type RaftOverrides = Omit<Partial<RaftConfig>, "id" | "storage" | "random" | "applied">;

export interface CoreClusterOptions {
  readonly seed?: number;
  readonly config?: RaftOverrides;
  /** Members that start as learners. */
  readonly learners?: readonly NodeId[];
  /** Storage to start a node from, instead of a fresh bootstrap. */
  readonly storages?: Readonly<Record<NodeId, LogStore>>;
  /** Makes each node's storage from the bootstrap configuration (default: MemoryStorage). */
  readonly storage?: (id: NodeId, members: readonly RaftMember[]) => LogStore;
  /** Check the five safety properties after every Ready (default true). */
  readonly check?: boolean;
}

/**
 * Raft cores wired together in memory (like etcd's `network` test helper): the test decides
 * when to tick and deliver, which messages to drop, and the checker watches every step.
 */
export class CoreCluster {
  readonly nodes = new Map<NodeId, CoreNode>();
  readonly checker = new SafetyChecker();
  /** Messages sent and not yet delivered, in order. */
  queue: Message[] = [];
  /** Returns true to drop a message. */
  drop: (m: Message) => boolean = () => false;
  /** Every message handed to the network, for counting. */
  readonly sent: Message[] = [];
  private readonly random: () => number;
  private readonly options: CoreClusterOptions;
  private readonly cut = new Set<string>();

  constructor(ids: readonly NodeId[], options: CoreClusterOptions = {}) {
    this.options = options;
    this.random = seededRandom(options.seed ?? 1);
    const learners = new Set(options.learners ?? []);
    const members: RaftMember[] = ids.map((id) => ({ id, address: `${id}:1`, learner: learners.has(id) }));
    for (const id of ids) {
      this.addNode(
        id,
        options.storages?.[id] ?? options.storage?.(id, members) ?? MemoryStorage.bootstrap(members),
      );
    }
  }

  /** Adds a node with the given storage (an empty one for a node joining later). */
  addNode(id: NodeId, storage: LogStore = new MemoryStorage()): CoreNode {
    const node: CoreNode = {
      id,
      storage,
      raft: this.makeRaft(id, storage, 0),
      applied: [],
      readStates: [],
      alive: true,
    };
    this.nodes.set(id, node);
    return node;
  }

  private makeRaft(id: NodeId, storage: LogStore, applied: number): Raft {
    return new Raft({ ...this.options.config, id, storage, random: this.random, applied });
  }

  node(id: NodeId): CoreNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** Loses everything not persisted (the core's state); keeps storage and the applied state. */
  crash(id: NodeId): void {
    const n = this.node(id);
    n.alive = false;
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    n.raft = this.makeRaft(id, n.storage, n.applied.at(-1)?.index ?? n.storage.snapshot().index);
    n.alive = true;
  }

  /** Cuts the links between `a` and `b` both ways. */
  disconnect(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.disconnect(id, other);
  }

  heal(): void {
    this.cut.clear();
    this.drop = () => false;
  }

  leader(): NodeId | undefined {
    const leaders = [...this.nodes.values()].filter((n) => n.alive && n.raft.role === "leader");
    leaders.sort((a, b) => b.raft.term - a.raft.term);
    return leaders[0]?.id;
  }

  /** Ticks `id` (or every live node) `n` times, processing Readies but delivering nothing. */
  tick(id?: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) {
        if (!node.alive || (id !== undefined && node.id !== id)) continue;
        node.raft.tick();
        this.processReady(node);
      }
    }
  }

  /** Starts an election on `id` and delivers until quiet. */
  campaign(id: NodeId): void {
    this.raft(id).campaignNow();
    this.processReady(this.node(id));
    this.stabilize();
  }

  /** Handles every Ready and delivers every message until nothing is left to do. */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      for (const n of this.nodes.values()) if (n.alive) this.processReady(n);
      if (this.queue.length === 0) return;
      this.deliverAll();
    }
    throw new Error("cluster did not stabilize");
  }

  /** Delivers the messages queued now (not those they cause). */
  deliverAll(): void {
    const batch = this.queue;
    this.queue = [];
    for (const m of batch) this.deliver(m);
  }

  deliver(m: Message): void {
    const to = this.nodes.get(m.to);
    if (!to?.alive || this.cut.has(`${m.from}>${m.to}`) || this.drop(m)) {
      this.lose(m);
      return;
    }
    to.raft.step(m);
    if (m.type === "snapshot") {
      // The runtime would stream the image and report the outcome to the sender.
      const from = this.nodes.get(m.from);
      this.processReady(to, from);
      if (from?.alive) from.raft.reportSnapshot(m.to, true);
    }
    this.processReady(to);
  }

  /** A message lost on the way. A snapshot's sender learns it failed, as the runtime's stream would tell it. */
  lose(m: Message): void {
    if (m.type !== "snapshot") return;
    const from = this.nodes.get(m.from);
    if (from?.alive) {
      from.raft.reportSnapshot(m.to, false);
      this.processReady(from);
    }
  }

  /** Persist, then send, then apply: the host's loop. */
  processReady(n: CoreNode, snapshotSource?: CoreNode): void {
    while (n.raft.hasReady()) {
      const rd: Ready = n.raft.ready();
      // A leader's replication messages may leave before its own write (§10.2.1).
      for (const m of rd.earlyMessages) {
        this.sent.push(m);
        this.queue.push(m);
      }
      void n.storage.save({ hardState: rd.hardState, snapshot: rd.snapshot, entries: rd.entries });
      if (rd.snapshot) {
        const source =
          snapshotSource ??
          [...this.nodes.values()].find((o) => (o.applied.at(-1)?.index ?? 0) >= rd.snapshot!.index);
        if (!source) throw new Error(`no node can provide the snapshot at ${rd.snapshot.index}`);
        n.applied = source.applied.filter((e) => e.index <= rd.snapshot!.index);
      }
      for (const m of rd.messages) {
        this.sent.push(m);
        this.queue.push(m);
      }
      for (const e of rd.committedEntries) {
        n.applied.push(e);
        if (this.options.check !== false) this.checker.applied(n.id, e);
      }
      n.readStates.push(...rd.readStates);
      n.raft.advance(rd);
      if (this.options.check !== false) this.observe();
    }
  }

  observe(): void {
    this.checker.observe(
      [...this.nodes.values()]
        .filter((n) => n.alive)
        .map((n) => {
          const log = n.raft.log;
          const first = log.firstIndex();
          return {
            id: n.id,
            role: n.raft.role,
            term: n.raft.term,
            commitIndex: log.committed,
            firstIndex: first,
            entries: log.slice(first, log.lastIndex() + 1) ?? [],
            snapshotTerm: log.term(first - 1) ?? 0,
          };
        }),
    );
  }

  /** Proposes on the current leader and delivers until quiet; returns the index. */
  propose(data: string | Uint8Array, on?: NodeId): number {
    const id = on ?? this.leader();
    if (!id) throw new Error("no leader");
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const r = this.raft(id).propose([bytes]);
    if (!r.ok) throw new Error(r.message);
    this.processReady(this.node(id));
    return r.index;
  }

  /** The normal commands a node applied, as strings. */
  appliedCommands(id: NodeId): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === "normal")
      .map((e) => new TextDecoder().decode(e.data));
  }
}
