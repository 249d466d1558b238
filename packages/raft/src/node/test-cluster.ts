import { type RecordedResult, RecordingStateMachine } from "@quorum/consensus/testing";
import { MemoryNetwork, type MemoryTransport, seededRandom, systemClock } from "@quorum/transport";
import { Registry } from "prom-client";
import { type LogStore, MemoryStorage } from "../core/storage.js";
import { RaftNode, type RaftNodeOptions } from "./raft-node.js";

export interface NodeSlot {
  node: RaftNode<RecordedResult>;
  transport: MemoryTransport;
  readonly storage: LogStore;
  readonly machine: RecordingStateMachine;
  readonly registry: Registry;
}

/**
 * RaftNodes on an in-memory network and the real clock, with small timeouts. Storage and
 * state machines survive `stop`/`restart`, as durable ones would.
 */
export class NodeCluster {
  readonly network = new MemoryNetwork();
  readonly slots = new Map<string, NodeSlot>();
  private seed = 1;

  constructor(
    readonly ids: readonly string[],
    readonly extra: Partial<RaftNodeOptions<RecordedResult>> = {},
    /** Opens node `id`'s durable log (again after a stop); default: one MemoryStorage kept across restarts. */
    readonly openStorage?: (id: string) => LogStore,
  ) {}

  async start(): Promise<void> {
    for (const id of this.ids) await this.startNode(id, this.ids);
  }

  async startNode(id: string, initial: readonly string[]): Promise<RaftNode<RecordedResult>> {
    const old = this.slots.get(id);
    const storage = this.openStorage ? this.openStorage(id) : (old?.storage ?? new MemoryStorage());
    const machine = old?.machine ?? new RecordingStateMachine();
    const registry = new Registry();
    const transport = this.network.join(id);
    const node = new RaftNode<RecordedResult>({
      id,
      peers: initial.map((p) => ({ id: p, address: `memory:${p}` })),
      transport,
      clock: systemClock,
      storage,
      stateMachine: machine,
      random: seededRandom(this.seed++),
      tickMs: 10,
      electionTicks: 10,
      metrics: registry,
      defaultTimeoutMs: 5_000,
      ...this.extra,
    });
    this.slots.set(id, { node, transport, storage, machine, registry });
    await node.start();
    return node;
  }

  node(id: string): RaftNode<RecordedResult> {
    return this.slot(id).node;
  }

  slot(id: string): NodeSlot {
    const s = this.slots.get(id);
    if (!s) throw new Error(`no node ${id}`);
    return s;
  }

  async stop(id: string): Promise<void> {
    const s = this.slot(id);
    await s.node.close();
    await s.transport.close();
    if (this.openStorage) s.storage.close();
  }

  async restart(id: string): Promise<void> {
    await this.startNode(id, this.ids);
  }

  leader(): string | undefined {
    const leaders = [...this.slots.entries()].filter(([, s]) => s.node.status().role === "leader");
    leaders.sort((a, b) => b[1].node.status().term - a[1].node.status().term);
    return leaders[0]?.[0];
  }

  async waitUntil(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async waitForLeader(): Promise<string> {
    let leader: string | undefined;
    await this.waitUntil("a leader", () => {
      leader = this.leader();
      return leader !== undefined;
    });
    return leader!;
  }

  async close(): Promise<void> {
    for (const id of this.slots.keys()) await this.stop(id);
  }
}
