import { keyRange, prefixEnd, type RevisionChanges } from "@quorum/kv";
import { type Prng, runSeeds, type ScenarioContext, Simulation, seedCount } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import {
  DeleteRangeRequest,
  LeaseGrantRequest,
  LeaseKeepAliveRequest,
  PutRequest,
  WatchRequest,
  type WatchResponse,
} from "../src/gen/etcdserverpb/rpc.js";
import { Event_EventType } from "../src/gen/mvccpb/kv.js";
import {
  currentLeader,
  leaderKiller,
  onLeader,
  ResumingWatcher,
  seen,
  sleep,
  within,
} from "./helpers/sim-clients.js";
import { type SimKv, type SimKvNode, simKv } from "./helpers/sim-kv.js";

/**
 * Watch and Lease on three simulated Raft nodes (DESIGN.md rule 2), with the lessor and the
 * watch hub on the simulated clock (test/helpers/sim-kv.ts), and leaders crashed on purpose.
 *
 * Lease: a lease is granted, kept alive while leaders crash, then left to expire while
 * leaders keep crashing (and, in the second test, the network partitions). Its keys must be
 * deleted exactly once on every replica, never before TTL has passed since the last keep-alive
 * a leader acknowledged, and not much after TTL past the last renewal or promotion. The
 * tolerance on "never before" is zero: every node reads the one simulated clock, a keep-alive
 * is renewed synchronously by the node that answers it, and a new leader restarts every TTL
 * plus `leaderLeaseExtendMs` (1 s). A deposed leader on the minority side of a partition keeps
 * renewing until CheckQuorum makes it step down (about one election timeout, 100-200 ms here),
 * and the new leader is elected after at least one election timeout: the extension covers
 * that overlap, so keep-alives it answered still hold.
 *
 * Watch: a client watches a prefix on one node while writers put and delete keys in and out
 * of the prefix, the network partitions and leaders crash. When its node crashes (or now and
 * then, to another node) it resumes from its last revision + 1, as etcd's clients do. What it
 * received must equal the committed history of the prefix: every revision exactly once, in
 * order, with the same events.
 */

const ids = ["n1", "n2", "n3"];

// ---- lease ---------------------------------------------------------------------------------

const TTL_S = 3;
const TTL_MS = TTL_S * 1000;
const LEASE_KEYS = ["lease/a", "lease/b"];

async function leaseScenario(ctx: ScenarioContext, options: { partitions: boolean }): Promise<void> {
  const { sim, seed } = ctx;
  sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 10, dropRate: 0.02, duplicateRate: 0.02 });
  const kv = simKv(sim, ids);
  const log: string[] = [];
  // Every replica's applied changes to the lease's keys, as they are applied (the durable
  // stores outlive incarnations, so this sees every apply of every incarnation).
  const deletes = new Map<string, { at: number; revision: number; key: string }[]>();
  const unsubscribe = ids.map((id) => {
    deletes.set(id, []);
    return kv.durable.get(id)!.store.onChanges((changes: readonly RevisionChanges[]) => {
      for (const c of changes)
        for (const e of c.events) {
          const key = e.kv?.key.toString() ?? "";
          if (e.type === Event_EventType.DELETE && LEASE_KEYS.includes(key))
            deletes.get(id)!.push({ at: sim.now(), revision: c.revision, key });
        }
    });
  });
  const ID = BigInt(0x1000 + (seed % 0x1000));
  try {
    await kv.cluster.start();
    await sim.eventually("a leader", () => kv.leader() !== undefined, 5_000);

    // The client runs on virtual time beside the scheduler, which this function drives.
    const prng = sim.prng.fork("lease");
    let stopKilling = false;
    let killer: ReturnType<typeof leaderKiller> | undefined;
    let lastRenewal = 0;
    let maxGap = 0;
    let stoppedAt: number | undefined;
    let nemesis: ReturnType<SimKv["cluster"]["startNemesis"]> | undefined;
    const client = async () => {
      // Grant with an explicit ID, so that a retry of a grant whose answer was lost is harmless.
      lastRenewal = sim.now();
      const granted = await onLeader(
        ctx,
        kv,
        (n) =>
          n.service.leaseGrant(LeaseGrantRequest.fromPartial({ ID, TTL: BigInt(TTL_S) })).then(() => true),
        5_000,
        (err) => (String(err).includes("lease already exists") ? true : undefined),
      );
      if (!granted) throw new Error("the lease grant never succeeded");
      for (const key of LEASE_KEYS) {
        const ok = await onLeader(
          ctx,
          kv,
          (n) =>
            n.service
              .put(PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from("v"), lease: ID }))
              .then(() => true),
          5_000,
        );
        if (!ok) throw new Error(`put ${key} with the lease never succeeded`);
      }

      // Keep it alive while leaders crash.
      killer = leaderKiller(ctx, kv, prng.fork("killer"), [700, 1800], [200, 900], () => stopKilling, log);
      if (options.partitions) nemesis = kv.cluster.startNemesis({ crash: false, intervalMs: [200, 800] });
      // Like a client on one connection, keep-alives stay with a node while it says it leads,
      // even a deposed leader that has not noticed yet (on the minority side of a partition).
      let sticky: SimKvNode | undefined;
      const pick = () => {
        const ok = sticky && [...kv.cluster.runtimes().values()].includes(sticky);
        if (!ok || sticky!.raft.status().role !== "leader") sticky = currentLeader(kv);
        return sticky;
      };
      const stopAt = sim.now() + 8_000;
      while (sim.now() < stopAt) {
        // When the leader renewed: the keep-alive is answered synchronously by the node called.
        let calledAt = sim.now();
        const ttl = await onLeader(
          ctx,
          kv,
          (n) => {
            calledAt = sim.now();
            return n.service.leaseKeepAliveOne(LeaseKeepAliveRequest.fromPartial({ ID })).then((r) => r.TTL);
          },
          300,
          undefined,
          pick,
        );
        if (ttl !== undefined && ttl > 0n) {
          maxGap = Math.max(maxGap, calledAt - lastRenewal);
          lastRenewal = calledAt;
          // The hardest last keep-alive: one a deposed leader answered after another node was
          // promoted. The new leader's TTL must still cover it (leaderLeaseExtendMs does).
          if (sticky && sticky !== currentLeader(kv)) {
            log.push(`${calledAt} keep-alive answered by a deposed leader; the client stops here`);
            break;
          }
        } else if (ttl === 0n && calledAt < lastRenewal + TTL_MS) {
          throw new Error(
            `keep-alive at t=${calledAt} answered TTL 0 (expired), ${calledAt - lastRenewal} ms after the last renewal at t=${lastRenewal}\n${log.join("\n")}`,
          );
        }
        // With partitions, often enough to reach a deposed leader before it notices.
        await sleep(ctx, options.partitions ? prng.int(10, 100) : prng.int(200, 800));
      }
      maxGap = Math.max(maxGap, sim.now() - lastRenewal);
      stoppedAt = sim.now();
      log.push(`${stoppedAt} keep-alives stop; last renewal at ${lastRenewal}`);
    };
    client().catch((e: unknown) => sim.fail(e));
    // When a node last became leader (sampled every 10 ms): its lessor restarts every TTL then.
    let lastPromotionAt = 0;
    let sampling = true;
    const terms = new Set<string>();
    void (async () => {
      while (sampling) {
        for (const [id, n] of kv.cluster.runtimes()) {
          const st = n.raft.status();
          if (st.role === "leader" && !terms.has(`${id}/${st.term}`)) {
            terms.add(`${id}/${st.term}`);
            lastPromotionAt = sim.now();
          }
        }
        await sleep(ctx, 10);
      }
    })();
    await sim.eventually("the client grants, puts and keeps alive", () => stoppedAt !== undefined, 30_000);

    // Left to expire, while leaders still crash.
    await sim.runUntilTime(stoppedAt! + TTL_MS + 2_000);
    stopKilling = true;
    await kv.cluster.livenessPhase();
    let killed = false;
    void killer!.done.then(() => (killed = true));
    await sim.eventually("the leader killer stops", () => killed, 5_000);
    await sim.eventually(
      "every replica deletes the lease's keys",
      () => ids.every((id) => LEASE_KEYS.every((k) => deletes.get(id)!.some((d) => d.key === k))),
      20_000,
    );
    // Let a second (wrong) revoke or expiry have its chance to show up.
    await sim.runFor(3_000);

    const context = `\nlog:\n${log.join("\n")}${nemesis ? `\nnemesis:\n${nemesis.log.join("\n")}` : ""}`;
    // The scenario ran as designed: leaders crashed, and keep-alives never lapsed for a TTL.
    // (Leaders change by crash, and with partitions also by elections on the majority side.)
    if (killer!.crashes() < 2 || terms.size < 4)
      throw new Error(`only ${killer!.crashes()} leader crashes, ${terms.size - 1} leader changes${context}`);
    if (maxGap >= TTL_MS) throw new Error(`keep-alives lapsed for ${maxGap} ms (TTL ${TTL_MS} ms)${context}`);

    for (const id of ids) {
      const store = kv.durable.get(id)!.store;
      const seen = deletes.get(id)!;
      for (const key of LEASE_KEYS) {
        const mine = seen.filter((d) => d.key === key);
        expect(mine.length, `${id}: deletes of ${key} applied${context}`).toBe(1);
        // Never while kept alive: not before TTL after the last renewal the leader acknowledged.
        expect(mine[0]!.at, `${id}: ${key} deleted at t=${mine[0]!.at}${context}`).toBeGreaterThanOrEqual(
          lastRenewal + TTL_MS,
        );
        // The MVCC history agrees: the put (twice if a retried put landed twice), then one
        // tombstone, last.
        const history = store
          .changesBetween(1, store.revision(), { range: keyRange(Buffer.from(key), Buffer.alloc(0)) })
          .flatMap((c) => c.events.map((e) => e.type));
        expect(
          history.filter((t) => t === Event_EventType.DELETE),
          `${id}: history of ${key}: ${history}`,
        ).toEqual([Event_EventType.DELETE]);
        expect(history.at(-1), `${id}: history of ${key}: ${history}`).toBe(Event_EventType.DELETE);
      }
      expect(store.lease(ID), `${id}: the lease is gone`).toBeUndefined();
    }
    // And not much later than TTL after the last renewal or the last promotion, whichever came
    // last: a new leader restarts the TTL plus leaderLeaseExtendMs (1 s), then its expiry scan
    // (every 0.5 s) proposes the revoke; 1 s more for the commit and the sampling.
    sampling = false;
    const first = Math.min(...ids.flatMap((id) => deletes.get(id)!.map((d) => d.at)));
    const from = Math.max(lastRenewal, lastPromotionAt);
    expect(
      first,
      `first delete at t=${first}, last renewal ${lastRenewal}, last promotion ${lastPromotionAt}${context}`,
    ).toBeLessThanOrEqual(from + TTL_MS + 1_000 + 500 + 1_000);
    // Every replica deleted at the same revision (one revoke through the log).
    const revisions = new Set(ids.flatMap((id) => deletes.get(id)!.map((d) => d.revision)));
    expect(revisions.size, `delete revisions ${[...revisions]}`).toBe(1);
    if (process.env.QUORUM_DEBUG) {
      console.log(
        `seed ${seed}: deleted at ${first}, ${first - lastRenewal} ms after the last renewal;`,
        log.join("; "),
      );
    }
  } finally {
    for (const u of unsubscribe) u();
    await kv.close();
  }
}

// ---- watch ---------------------------------------------------------------------------------

const PREFIX = Buffer.from("w/");
const WATCH_KEYS = ["w/a", "w/b", "w/c", "x/outside", "w/d"];

async function writer(ctx: ScenarioContext, kv: SimKv, prng: Prng, name: string, stop: () => boolean) {
  let n = 0;
  while (!stop()) {
    const key = Buffer.from(prng.pick(WATCH_KEYS));
    const up = [...kv.cluster.runtimes().entries()];
    const leader = kv.leader();
    const node =
      (leader && prng.chance(0.8) ? kv.cluster.runtime(leader) : undefined) ??
      (up.length > 0 ? prng.pick(up)[1] : undefined);
    if (node) {
      const op: Promise<unknown> = prng.chance(0.2)
        ? node.service.deleteRange(DeleteRangeRequest.fromPartial({ key }))
        : node.service.put(PutRequest.fromPartial({ key, value: Buffer.from(`${name}.${++n}`) }));
      // Outcomes do not matter here: the committed history is what the watcher must see.
      await within(ctx, 1_000, op);
    }
    await sleep(ctx, prng.int(0, 30));
  }
}

async function watchScenario(ctx: ScenarioContext, options: { slow: boolean }): Promise<void> {
  const { sim, seed } = ctx;
  sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 15, dropRate: 0.03, duplicateRate: 0.03 });
  const kv = simKv(sim, ids, {
    raft: () => ({ snapshotThreshold: 60 + (seed % 60), snapshotCatchUpEntries: seed % 2 === 0 ? 0 : 10 }),
    // A slow client overflows a queue of 3 responses at once: its watcher then catches up
    // from history, back and forth with live events.
    ...(options.slow ? { service: { watchMaxPendingResponses: 3 } } : {}),
  });
  const log: string[] = [];
  try {
    await kv.cluster.start();
    await sim.eventually("a leader", () => kv.leader() !== undefined, 5_000);
    let stop = false;
    let stopWatching = false;
    const watcher = new ResumingWatcher(
      ctx,
      kv,
      sim.prng.fork("watcher"),
      { key: PREFIX, rangeEnd: prefixEnd(PREFIX) },
      undefined,
      options.slow ? 0.5 : 0,
    );
    const killer = leaderKiller(ctx, kv, sim.prng.fork("killer"), [600, 1500], [100, 700], () => stop, log);
    const nemesis = kv.cluster.startNemesis({ crash: false, intervalMs: [200, 800] });
    const running = [
      watcher.loop(() => stopWatching),
      ...["c1", "c2", "c3"].map((name) => writer(ctx, kv, sim.prng.fork(`writer/${name}`), name, () => stop)),
      killer.done,
    ].map((p) => p.catch((e: unknown) => sim.fail(e)));

    await sim.runUntilTime(sim.now() + 6_000);
    stop = true;
    await kv.cluster.livenessPhase();
    // Writers and the leader killer stop first, so that nothing commits after the history is read.
    let writersDone = false;
    void Promise.all(running.slice(1)).then(() => (writersDone = true));
    await sim.eventually("writers stop", () => writersDone, 5_000);
    if (kv.cluster.down().length > 0) await kv.cluster.livenessPhase();
    await sim.eventually(
      "every replica applies the same log",
      () => {
        const applied = ids.map((id) => kv.durable.get(id)!.store.appliedIndex());
        return kv.cluster.up().length === ids.length && applied.every((a) => a === applied[0]);
      },
      10_000,
    );
    const store = kv.durable.get(ids[0]!)!.store;
    const committed = seen(
      store.changesBetween(1, store.revision(), {
        range: keyRange(PREFIX, prefixEnd(PREFIX)),
        prevKv: false,
      }),
    );
    const last = committed.at(-1)?.revision ?? 0;
    await sim.eventually(
      "the watcher reaches the last committed revision",
      () => watcher.revision >= last,
      10_000,
    );
    stopWatching = true;
    let finished = false;
    void Promise.all(running).then(() => (finished = true));
    await sim.eventually("clients stop", () => finished, 5_000);
    watcher.close();

    const context = `\nleader crashes:\n${log.join("\n")}\nnemesis:\n${nemesis.log.join("\n")}`;
    expect(watcher.problems, `watch problems${context}`).toEqual([]);
    if (killer.crashes() < 2) throw new Error(`only ${killer.crashes()} leader crashes${context}`);
    if (watcher.resumes < 2) throw new Error(`the watcher resumed only ${watcher.resumes} times${context}`);
    if (committed.length < 50)
      throw new Error(`only ${committed.length} committed changes: the workload did not run`);
    // Exactly the committed history of the prefix: every revision once, in order, same events.
    expect(watcher.received, `events received vs committed${context}`).toEqual(committed);
    if (process.env.QUORUM_DEBUG)
      console.log(
        `seed ${seed}: ${committed.length} events, ${watcher.resumes} resumes, ${killer.crashes()} crashes`,
      );
  } finally {
    await kv.close();
  }
}

describe("watch and lease under simulation", () => {
  const lease =
    "a lease kept alive across leader crashes survives, then expires once, never within TTL of its last keep-alive";
  it(lease, { timeout: 30_000 + 4_000 * seedCount({ seeds: 6 }) }, async () => {
    const { seeds } = await runSeeds(lease, (_seed, ctx) => leaseScenario(ctx, { partitions: false }), {
      seeds: 6,
    });
    expect(seeds.length).toBeGreaterThan(0);
  });

  const leasePartitions =
    "with partitions too, keep-alives to a deposed leader that has not noticed never let the lease expire early";
  it(leasePartitions, { timeout: 30_000 + 4_000 * seedCount({ seeds: 6 }) }, async () => {
    const { seeds } = await runSeeds(
      leasePartitions,
      (_seed, ctx) => leaseScenario(ctx, { partitions: true }),
      { seeds: 6 },
    );
    expect(seeds.length).toBeGreaterThan(0);
  });

  const watch =
    "a watch resumed from its last revision across leader crashes and partitions sees the committed history exactly once, in order";
  it(watch, { timeout: 30_000 + 5_000 * seedCount({ seeds: 6 }) }, async () => {
    const { seeds } = await runSeeds(watch, (_seed, ctx) => watchScenario(ctx, { slow: false }), {
      seeds: 6,
    });
    expect(seeds.length).toBeGreaterThan(0);
  });

  const slow =
    "a slow watch client (bounded queue overflowing to catch-ups from history) also sees the committed history exactly once, in order";
  it(slow, { timeout: 30_000 + 5_000 * seedCount({ seeds: 6 }) }, async () => {
    const { seeds } = await runSeeds(slow, (_seed, ctx) => watchScenario(ctx, { slow: true }), { seeds: 6 });
    expect(seeds.length).toBeGreaterThan(0);
  });
});

/**
 * The harness itself: a crashed process answers nothing, so a watch opened on a node's old
 * incarnation must go silent, even though the store it read outlives the crash (the old
 * service would otherwise keep feeding it from the new incarnation's applies).
 */
describe("simulated crash", () => {
  it("ends the crashed incarnation's watch streams; the restarted node serves new ones", async () => {
    const sim = new Simulation(7);
    const kv = simKv(sim, ids);
    try {
      await kv.cluster.start();
      await sim.eventually("a leader", () => kv.leader() !== undefined, 5_000);
      const follower = ids.find((id) => id !== kv.leader())!;
      const watch = (node: SimKvNode, got: WatchResponse[]) => {
        const stream = node.service.watchHub.open({ write: (r) => got.push(r) > 0 });
        stream.handle(WatchRequest.fromPartial({ createRequest: { key: Buffer.from("k") } }));
      };
      const put = async (value: string) => {
        let done = false;
        void onLeader(
          { seed: 7, sim },
          kv,
          (n) => n.service.put(PutRequest.fromPartial({ key: Buffer.from("k"), value: Buffer.from(value) })),
          5_000,
        ).then(() => (done = true));
        await sim.eventually(`put ${value}`, () => done, 5_000);
      };
      const old: WatchResponse[] = [];
      watch(kv.cluster.runtime(follower)!, old);
      await put("1");
      await sim.eventually(
        "the first incarnation sees the put",
        () => old.some((r) => r.events.length > 0),
        2_000,
      );
      kv.cluster.crash(follower);
      await kv.cluster.restart(follower);
      const fresh: WatchResponse[] = [];
      watch(kv.cluster.runtime(follower)!, fresh);
      const before = old.length;
      await put("2");
      await sim.eventually(
        "the new incarnation sees the put",
        () => fresh.some((r) => r.events.length > 0),
        5_000,
      );
      await sim.runFor(500);
      expect(old.length, "responses to the crashed incarnation's stream").toBe(before);
      expect(fresh.flatMap((r) => r.events.map((e) => e.kv?.value.toString()))).toEqual(["2"]);
    } finally {
      await kv.close();
    }
  });
});
