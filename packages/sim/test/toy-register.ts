/**
 * A toy replicated register, to show the toolkit end to end: a fixed leader (n1) orders
 * writes, persists and syncs them, replicates them to two followers, and answers a write once
 * one follower has it too (a majority of three). The correct protocol reads from the leader.
 * The buggy one lets a client read from any replica: a follower that has not caught up
 * returns a stale value after a write completed, which the linearizability checker catches.
 *
 * It uses only what a real runtime gets: a Clock, a Transport and a disk.
 */
import type { Clock, NodeId, Timer, Transport } from "@quorum/transport";
import {
  checkLinearizability,
  History,
  type NodeContext,
  type Prng,
  type ScenarioContext,
  SimCluster,
  type SimFile,
  type Value,
} from "../src/index.js";

export const LEADER = "n1";
export const SERVERS = ["n1", "n2", "n3"];
const CHANNEL = "register";

type Msg =
  | { t: "req"; id: number; op: "read" }
  | { t: "req"; id: number; op: "write"; value: Value }
  | { t: "res"; id: number; value?: Value | undefined }
  | { t: "rep"; version: number; value: Value }
  | { t: "ack"; version: number };

const encode = (m: Msg) => new TextEncoder().encode(JSON.stringify(m));
const decode = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as Msg;

interface Stored {
  version: number;
  value: Value | undefined;
  /**
   * The last write request applied per client, persisted with the value. Without it a
   * duplicated (or long-delayed) request re-applies an old write after newer ones: the
   * simulator found exactly that bug in the first version of this "correct" protocol.
   */
  lastRequest: Record<NodeId, number>;
}

export class RegisterServer {
  private state: Stored;
  private readonly file: SimFile;
  private readonly transport: Transport;
  private readonly acked = new Map<NodeId, number>();
  /** Writes waiting for a follower's ack: version -> (client, request id). */
  private readonly waiting = new Map<number, { client: NodeId; id: number }>();

  constructor(private readonly ctx: NodeContext) {
    this.transport = ctx.transport;
    this.file = ctx.disk.file("register");
    const bytes = this.file.read();
    this.state =
      bytes.length > 0
        ? (JSON.parse(new TextDecoder().decode(bytes)) as Stored)
        : { version: 0, value: undefined, lastRequest: {} };
    this.transport.subscribe(CHANNEL, (from, payload) => this.onMessage(from, decode(payload)));
    if (ctx.id === LEADER) this.retransmit();
  }

  private persist(): void {
    this.file.writeAll(new TextEncoder().encode(JSON.stringify(this.state)));
    this.file.sync(); // before acknowledging: what was acknowledged survives a crash
  }

  private send(to: NodeId, m: Msg): void {
    this.transport.addPeer({ id: to, address: "" });
    this.transport.send(to, CHANNEL, encode(m));
  }

  private onMessage(from: NodeId, m: Msg): void {
    switch (m.t) {
      case "req":
        if (m.op === "read") {
          // The buggy client sends reads to followers too; they answer from local state.
          this.send(from, { t: "res", id: m.id, value: this.state.value });
        } else if (this.ctx.id === LEADER && m.id > (this.state.lastRequest[from] ?? -1)) {
          const lastRequest = { ...this.state.lastRequest, [from]: m.id };
          this.state = { version: this.state.version + 1, value: m.value, lastRequest };
          this.persist();
          this.waiting.set(this.state.version, { client: from, id: m.id });
          for (const f of SERVERS) if (f !== LEADER) this.send(f, { t: "rep", ...this.current() });
        }
        return;
      case "rep":
        if (m.version > this.state.version) {
          this.state = { ...this.state, version: m.version, value: m.value };
          this.persist();
        }
        this.send(from, { t: "ack", version: this.state.version });
        return;
      case "ack": {
        this.acked.set(from, Math.max(this.acked.get(from) ?? 0, m.version));
        for (const [version, w] of this.waiting) {
          if (version <= m.version) {
            this.waiting.delete(version);
            this.send(w.client, { t: "res", id: w.id });
          }
        }
        return;
      }
      case "res":
        return;
    }
  }

  private current(): { version: number; value: Value } {
    return { version: this.state.version, value: this.state.value as Value };
  }

  /** Lost replication messages are resent until each follower acknowledges the latest version. */
  private retransmit(): void {
    for (const f of SERVERS) {
      if (f !== LEADER && this.state.version > 0 && (this.acked.get(f) ?? 0) < this.state.version) {
        this.send(f, { t: "rep", ...this.current() });
      }
    }
    this.ctx.clock.schedule(20, () => this.retransmit());
  }
}

/** A client issuing reads and writes of unique values until `until()` says stop. */
export class RegisterClient {
  private nextId = 0;
  private readonly pending = new Map<number, (m: Msg & { t: "res" }) => void>();
  completed = 0;

  constructor(
    readonly id: NodeId,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly prng: Prng,
    private readonly history: History,
    private readonly readFromAnyReplica: boolean,
  ) {
    for (const s of SERVERS) transport.addPeer({ id: s, address: "" });
    transport.subscribe(CHANNEL, (_from, payload) => {
      const m = decode(payload);
      if (m.t === "res") this.pending.get(m.id)?.(m);
    });
  }

  private request(to: NodeId, m: Msg, timeoutMs: number): Promise<(Msg & { t: "res" }) | undefined> {
    return new Promise((resolve) => {
      const id = (m as { id: number }).id;
      let timer: Timer | undefined;
      this.pending.set(id, (res) => {
        timer?.cancel();
        this.pending.delete(id);
        resolve(res);
      });
      timer = this.clock.schedule(timeoutMs, () => {
        this.pending.delete(id);
        resolve(undefined);
      });
      this.transport.send(to, CHANNEL, encode(m));
    });
  }

  async run(until: () => boolean): Promise<void> {
    while (!until()) {
      const id = this.nextId++;
      if (this.prng.chance(0.5)) {
        const server = this.readFromAnyReplica ? this.prng.pick(SERVERS) : LEADER;
        const op = this.history.invoke(this.id, "x", { type: "read" });
        const res = await this.request(server, { t: "req", id, op: "read" }, 100);
        if (res) {
          this.history.complete(op, { type: "read", value: res.value });
          this.completed++;
        } else this.history.unknown(op);
      } else {
        const value = `${this.id}-${id}`;
        const op = this.history.invoke(this.id, "x", { type: "write", value });
        const res = await this.request(LEADER, { t: "req", id, op: "write", value }, 100);
        if (res) {
          this.history.complete(op, { type: "write" });
          this.completed++;
        } else this.history.unknown(op);
      }
      await new Promise<void>((r) => this.clock.schedule(this.prng.int(0, 20), r));
    }
  }
}

/**
 * Safety phase (faults: delays, loss, duplicates, crashes, partitions, swizzles) then a
 * liveness phase (no faults) in which clients must make progress; then the whole client
 * history must be linearizable.
 */
export async function registerScenario(ctx: ScenarioContext, readFromAnyReplica: boolean): Promise<void> {
  const { sim } = ctx;
  sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 15, dropRate: 0.05, duplicateRate: 0.05 });
  const cluster = new SimCluster(sim, SERVERS, (node) => new RegisterServer(node));
  await cluster.start();
  const history = new History(sim.clock);
  let stopAt = 3000;
  const clients = ["c1", "c2", "c3"].map(
    (id) =>
      new RegisterClient(
        id,
        sim.network.transport(id),
        sim.clock,
        sim.prng.fork(id),
        history,
        readFromAnyReplica,
      ),
  );
  const done = clients.map((c) => c.run(() => sim.now() >= stopAt).catch((e) => sim.fail(e)));
  cluster.startNemesis({ intervalMs: [100, 400], downMs: [50, 400] });
  await sim.runUntilTime(2000);

  await cluster.livenessPhase();
  const completed = () => clients.reduce((n, c) => n + c.completed, 0);
  const before = completed();
  await sim.eventually("10 client operations complete", () => completed() >= before + 10, 1000);
  await sim.runUntilTime(3000);
  stopAt = sim.now();
  await sim.runUntilIdle(sim.now() + 1000);
  await Promise.all(done);

  const result = checkLinearizability(history);
  if (!result.ok) throw new Error(result.explanation);
}
