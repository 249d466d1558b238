import type { RevisionChanges } from "@quorum/kv";
import type { Prng, ScenarioContext } from "@quorum/sim";
import { WatchRequest, type WatchResponse } from "../../src/gen/etcdserverpb/rpc.js";
import type { Event_EventType } from "../../src/gen/mvccpb/kv.js";
import type { SimKv, SimKvNode } from "./sim-kv.js";

// Clients for the simulated store (helpers/sim-kv.ts): virtual-time waits, calls that a
// crashed node never answers, a leader killer, and a watch client that resumes.

export function sleep(ctx: ScenarioContext, ms: number): Promise<void> {
  return new Promise((resolve) => ctx.sim.clock.schedule(ms, resolve));
}

/** Resolves with the call's outcome, or `undefined` when the node never answers within `ms`. */
export async function within<T>(
  ctx: ScenarioContext,
  ms: number,
  p: Promise<T>,
): Promise<{ value: T } | { error: unknown } | undefined> {
  return Promise.race([
    p.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    sleep(ctx, ms).then(() => undefined),
  ]);
}

/**
 * Crashes the current leader every `everyMs` (when every node is up) and restarts it after
 * `downMs`, so the run sees leader changes by crash. Returns how many leaders it crashed.
 */
export function leaderKiller(
  ctx: ScenarioContext,
  kv: SimKv,
  prng: Prng,
  everyMs: [number, number],
  downMs: [number, number],
  stop: () => boolean,
  log: string[],
): { crashes: () => number; done: Promise<void> } {
  let crashes = 0;
  const done = (async () => {
    while (!stop()) {
      await sleep(ctx, prng.int(...everyMs));
      if (stop()) break;
      const leader = kv.leader();
      if (!leader || kv.cluster.down().length > 0) continue;
      log.push(`${ctx.sim.now()} crash leader ${leader}`);
      kv.cluster.crash(leader);
      crashes++;
      await sleep(ctx, prng.int(...downMs));
      if (!kv.cluster.isUp(leader)) {
        log.push(`${ctx.sim.now()} restart ${leader}`);
        await kv.cluster.restart(leader);
      }
    }
  })();
  return { crashes: () => crashes, done };
}

export function currentLeader(kv: SimKv): SimKvNode | undefined {
  const id = kv.leader();
  return id ? kv.cluster.runtime(id) : undefined;
}

/**
 * Calls `fn` on the current leader (or the node `pick` gives) until it succeeds, fails for
 * good, or `deadlineMs` passes.
 */
export async function onLeader<T>(
  ctx: ScenarioContext,
  kv: SimKv,
  fn: (node: SimKvNode) => Promise<T>,
  deadlineMs: number,
  accept: (err: unknown) => T | undefined = () => undefined,
  pick: () => SimKvNode | undefined = () => currentLeader(kv),
): Promise<T | undefined> {
  const deadline = ctx.sim.now() + deadlineMs;
  while (ctx.sim.now() < deadline) {
    const node = pick();
    if (node) {
      const r = await within(ctx, Math.min(500, deadline - ctx.sim.now()), fn(node));
      if (r && "value" in r) return r.value;
      if (r && "error" in r) {
        const settled = accept(r.error);
        if (settled !== undefined) return settled;
      }
    }
    await sleep(ctx, 20);
  }
  return undefined;
}

/** One event as a watch client saw it (or as the store's history has it). */
export interface Seen {
  readonly revision: number;
  readonly type: Event_EventType;
  readonly key: string;
  readonly value: string;
}

/** What a watch client talks to on one node: a `WatchStream`, or the router's merged one. */
export interface WatchConnection {
  handle(req: WatchRequest): void;
  /** The client can take more (after a write that returned false). */
  drain(): void;
  close(): void;
}

/** Opens a watch stream on `node` whose responses go to `write`. */
export type OpenWatch = (
  node: SimKvNode,
  write: (r: WatchResponse) => boolean,
  id: string,
) => WatchConnection;

/** The events of `changes` (a store's history), as a watch client would see them. */
export function seen(changes: readonly RevisionChanges[]): Seen[] {
  return changes.flatMap((c) =>
    c.events.map(
      (e): Seen => ({
        revision: c.revision,
        type: e.type,
        key: e.kv?.key.toString() ?? "",
        value: e.kv?.value.toString() ?? "",
      }),
    ),
  );
}

/**
 * A watch client on [key, rangeEnd) that resumes from its last revision + 1 on another node
 * when its node dies (and now and then anyway, as a client reconnecting would). Revisions
 * must rise from one response to the next; one response may hold several events of one
 * revision (a merged multi-shard watch sends all shards' events of a revision together).
 */
export class ResumingWatcher {
  readonly received: Seen[] = [];
  resumes = 0;
  private lastRev = 0;
  private nodeId: string | undefined;
  private node: SimKvNode | undefined;
  private stream: WatchConnection | undefined;
  readonly problems: string[] = [];

  constructor(
    private readonly ctx: ScenarioContext,
    private readonly kv: SimKv,
    private readonly prng: Prng,
    private readonly range: { key: Buffer; rangeEnd: Buffer },
    private readonly open: OpenWatch = (node, write) => node.service.watchHub.open({ write }),
    /**
     * Chance that a response leaves the client backed up (its write returns false) for 1-40
     * ms: the stream must queue, and past its bound (`watchMaxPendingResponses`) catch up
     * from history.
     */
    private readonly slowness = 0,
  ) {}

  get revision(): number {
    return this.lastRev;
  }

  private onResponse(r: WatchResponse): void {
    if (r.canceled) this.problems.push(`t=${this.ctx.sim.now()} watch canceled: ${r.cancelReason}`);
    const before = this.lastRev;
    for (const e of r.events) {
      const revision = Number(e.kv?.modRevision ?? 0n);
      if (revision < this.lastRev || (revision === this.lastRev && revision === before)) {
        this.problems.push(
          `t=${this.ctx.sim.now()} on ${this.nodeId}: revision ${revision} after ${this.lastRev} (duplicate or out of order)`,
        );
        continue;
      }
      this.lastRev = revision;
      this.received.push({
        revision,
        type: e.type,
        key: e.kv?.key.toString() ?? "",
        value: e.kv?.value.toString() ?? "",
      });
    }
  }

  /** Opens the watch on a live node, from the revision after the last one received. */
  private connect(avoid?: string): void {
    this.stream?.close();
    this.stream = undefined;
    const up = [...this.kv.cluster.runtimes().entries()];
    const others = up.filter(([id]) => id !== avoid);
    const candidates = others.length > 0 ? others : up;
    if (candidates.length === 0) {
      this.nodeId = undefined;
      return;
    }
    const [id, node] = this.prng.pick(candidates);
    this.nodeId = id;
    this.node = node;
    const self = { stream: undefined as WatchConnection | undefined };
    self.stream = this.open(
      node,
      (r) => {
        this.onResponse(r);
        if (this.slowness === 0 || !this.prng.chance(this.slowness)) return true;
        this.ctx.sim.clock.schedule(this.prng.int(1, 40), () => {
          if (this.stream === self.stream) self.stream?.drain();
        });
        return false;
      },
      id,
    );
    this.stream = self.stream;
    this.stream.handle(
      WatchRequest.fromPartial({ createRequest: { ...this.range, startRevision: BigInt(this.lastRev + 1) } }),
    );
  }

  async loop(stop: () => boolean): Promise<void> {
    this.connect();
    let switchAt = this.ctx.sim.now() + this.prng.int(300, 1500);
    while (!stop()) {
      await sleep(this.ctx, 20);
      // The connection drops when the node dies (its service was closed with it).
      const gone = !this.nodeId || this.kv.cluster.runtime(this.nodeId) !== this.node;
      if (gone || this.ctx.sim.now() >= switchAt) {
        if (this.nodeId) this.resumes++;
        this.connect(gone ? undefined : this.nodeId);
        switchAt = this.ctx.sim.now() + this.prng.int(300, 1500);
      }
    }
  }

  close(): void {
    this.stream?.close();
  }
}
