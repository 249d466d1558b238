import { type RecordedResult, RecordingStateMachine } from "@quorum/consensus/testing";
import { MemoryNetwork, type MemoryTransport, seededRandom, systemClock } from "@quorum/transport";
import { MemoryAcceptorStore } from "../storage/acceptor-store.js";
import { PaxosNode, type PaxosNodeOptions } from "./paxos-node.js";

interface NodeSlot {
  node: PaxosNode<RecordedResult>;
  transport: MemoryTransport;
  readonly storage: MemoryAcceptorStore;
  readonly machine: RecordingStateMachine;
}

/**
 * PaxosNodes on an in-memory network and the real clock, with short ticks. Acceptor stores
 * and state machines survive `stop`/`restart`, as durable ones would.
 */
export class NodeCluster {
  readonly network = new MemoryNetwork();
  readonly slots = new Map<string, NodeSlot>();
  private seed = 1;

  constructor(
    readonly ids: readonly string[],
    readonly extra: Partial<PaxosNodeOptions<RecordedResult>> = {},
  ) {}

  async start(): Promise<void> {
    for (const id of this.ids) await this.restart(id);
  }

  async restart(id: string): Promise<void> {
    const old = this.slots.get(id);
    const storage = old?.storage ?? new MemoryAcceptorStore();
    const machine = old?.machine ?? new RecordingStateMachine();
    const transport = this.network.join(id);
    const node = new PaxosNode<RecordedResult>({
      id,
      peers: this.ids.map((p) => ({ id: p, address: `memory:${p}` })),
      transport,
      clock: systemClock,
      storage,
      stateMachine: machine,
      random: seededRandom(this.seed++),
      tickMs: 10,
      electionTicks: 10,
      ...this.extra,
    });
    this.slots.set(id, { node, transport, storage, machine });
    await node.start();
  }

  node(id: string): PaxosNode<RecordedResult> {
    return this.slot(id).node;
  }

  machine(id: string): RecordingStateMachine {
    return this.slot(id).machine;
  }

  async stop(id: string): Promise<void> {
    const s = this.slot(id);
    await s.node.close();
    await s.transport.close();
  }

  async waitUntil(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!predicate()) {
      if (performance.now() > deadline)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async close(): Promise<void> {
    for (const id of this.ids) await this.stop(id);
  }

  private slot(id: string): NodeSlot {
    const s = this.slots.get(id);
    if (!s) throw new Error(`no node ${id}`);
    return s;
  }
}
