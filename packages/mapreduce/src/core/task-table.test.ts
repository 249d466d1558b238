import { Prng, runSeeds } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import {
  type Assignment,
  type MapSplit,
  type TableSnapshot,
  TaskTable,
  type TaskTableConfig,
} from "./task-table.js";

function splits(n: number): MapSplit[] {
  return Array.from({ length: n }, (_, i) => ({
    path: `/in/${i}`,
    fileName: `in-${i}.txt`,
    offset: 0,
    length: 10,
  }));
}

function config(maps: number, reduces: number, over: Partial<TaskTableConfig> = {}): TaskTableConfig {
  return {
    splits: splits(maps),
    reduces,
    taskTimeoutMs: 10_000,
    workerTimeoutMs: 10_000,
    backupAfterMs: 3_000,
    maxTaskFailures: 3,
    ...over,
  };
}

function expectTask<K extends "map" | "reduce">(
  a: Assignment,
  type: K,
  index?: number,
): Extract<Assignment, { type: K }> {
  if (a.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(a)}`);
  const task = a as Extract<Assignment, { type: K }>;
  if (index !== undefined) expect((task as { index: number }).index).toBe(index);
  return task;
}

describe("TaskTable", () => {
  it("hands out every map, then every reduce, each once, then tells workers to exit", () => {
    const t = new TaskTable(config(3, 2));
    const seen: string[] = [];
    let now = 0;
    for (;;) {
      const a = t.requestTask(now % 2 === 0 ? "a" : "b", "addr", now);
      now += 1;
      if (a.type === "exit") break;
      if (a.type === "wait") throw new Error("should never wait: tasks finish at once");
      seen.push(`${a.type}${a.index}`);
      if (a.type === "reduce") {
        expect(a.locations.map((l) => l.workerId).every((w) => w === "a" || w === "b")).toBe(true);
      }
      const w = t.tasks().find((x) => x.kind === a.type && x.index === a.index)!.attempts[0]!.workerId;
      expect(t.reportDone(w, a.type, a.index, a.attemptId, now)).toEqual({ type: "accepted" });
    }
    expect(seen).toEqual(["map0", "map1", "map2", "reduce0", "reduce1"]);
    expect(t.phase()).toBe("done");
    expect(t.tasks().every((x) => x.runs === 1)).toBe(true);
  });

  it("does not start reduce tasks while a map task is unfinished", () => {
    const t = new TaskTable(config(2, 1));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    const m1 = expectTask(t.requestTask("b", "B", 0), "map", 1);
    t.reportDone("a", "map", 0, m0.attemptId, 1);
    expect(t.requestTask("a", "A", 2)).toEqual({ type: "wait" });
    t.reportDone("b", "map", 1, m1.attemptId, 3);
    const r = expectTask(t.requestTask("a", "A", 4), "reduce", 0);
    expect(r.locations).toEqual([
      { mapIndex: 0, workerId: "a", address: "A" },
      { mapIndex: 1, workerId: "b", address: "B" },
    ]);
  });

  it("gives a task that timed out to another worker; the first to finish wins", () => {
    const t = new TaskTable(config(1, 1, { backupAfterMs: Number.POSITIVE_INFINITY }));
    const first = expectTask(t.requestTask("a", "A", 0), "map", 0);
    expect(t.requestTask("b", "B", 9_999)).toEqual({ type: "wait" });
    t.heartbeat("a", "A", 9_999);
    const second = expectTask(t.requestTask("b", "B", 10_000), "map", 0);
    expect(second.attemptId).not.toBe(first.attemptId);
    expect(t.takeEvents().some((e) => e.type === "task-timeout" && e.workerId === "a")).toBe(true);
    // The stalled attempt comes back first: its output is as good as any.
    expect(t.reportDone("a", "map", 0, first.attemptId, 10_001).type).toBe("accepted");
    expect(t.reportDone("b", "map", 0, second.attemptId, 10_002).type).toBe("duplicate");
    expect(t.task("map", 0)).toMatchObject({ state: "completed", completedBy: "a", runs: 2 });
  });

  it("runs backup copies of in-progress tasks near the end of a phase, and ignores the loser", () => {
    const t = new TaskTable(config(2, 1, { backupAfterMs: 1_000 }));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    const m1 = expectTask(t.requestTask("b", "B", 0), "map", 1);
    t.reportDone("b", "map", 1, m1.attemptId, 100);
    // Too early for a backup, and never a backup of a worker's own task.
    expect(t.requestTask("b", "B", 500)).toEqual({ type: "wait" });
    expect(t.requestTask("a", "A", 1_500)).toEqual({ type: "wait" });
    const backup = expectTask(t.requestTask("b", "B", 1_500), "map", 0);
    expect(backup.backup).toBe(true);
    // Only one backup per task.
    expect(t.requestTask("c", "C", 1_600)).toEqual({ type: "wait" });
    expect(t.reportDone("b", "map", 0, backup.attemptId, 1_700).type).toBe("accepted");
    expect(t.reportDone("a", "map", 0, m0.attemptId, 1_800).type).toBe("duplicate");
    expect(t.task("map", 0)).toMatchObject({ completedBy: "b", runs: 2 });
    expectTask(t.requestTask("a", "A", 1_900), "reduce", 0);
  });

  it("re-runs a dead worker's completed map tasks while reduce tasks still need them (paper 3.3)", () => {
    const t = new TaskTable(config(2, 2));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    const m1 = expectTask(t.requestTask("b", "B", 0), "map", 1);
    t.reportDone("a", "map", 0, m0.attemptId, 1);
    t.reportDone("b", "map", 1, m1.attemptId, 1);
    const r0 = expectTask(t.requestTask("b", "B", 2), "reduce", 0);
    t.workerDead("a", 3);
    expect(t.phase()).toBe("map");
    expect(t.task("map", 0)).toMatchObject({ state: "idle", completedBy: "" });
    expect(t.task("map", 1)).toMatchObject({ state: "completed", completedBy: "b" });
    // b's reduce attempt may still finish if it fetched before a died; the re-run comes first.
    const rerun = expectTask(t.requestTask("c", "C", 4), "map", 0);
    t.reportDone("c", "map", 0, rerun.attemptId, 5);
    t.reportDone("b", "reduce", 0, r0.attemptId, 6);
    const r1 = expectTask(t.requestTask("c", "C", 7), "reduce", 1);
    expect(r1.locations[0]).toEqual({ mapIndex: 0, workerId: "c", address: "C" });
    t.reportDone("c", "reduce", 1, r1.attemptId, 8);
    expect(t.phase()).toBe("done");
    // Once every reduce task is done, a worker's death costs nothing.
    t.workerDead("b", 9);
    expect(t.phase()).toBe("done");
  });

  it("cancels a dead worker's running attempts and ignores their late reports", () => {
    const t = new TaskTable(config(1, 1));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    t.workerDead("a", 1);
    expect(t.task("map", 0)!.state).toBe("idle");
    const again = expectTask(t.requestTask("b", "B", 2), "map", 0);
    expect(t.reportDone("a", "map", 0, m0.attemptId, 3).type).toBe("duplicate");
    expect(t.reportDone("b", "map", 0, again.attemptId, 4).type).toBe("accepted");
  });

  it("declares a silent worker dead after the worker timeout", () => {
    const t = new TaskTable(config(2, 1, { workerTimeoutMs: 5_000 }));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    t.reportDone("a", "map", 0, m0.attemptId, 1);
    const m1 = expectTask(t.requestTask("b", "B", 1), "map", 1);
    t.heartbeat("b", "B", 4_000);
    t.tick(5_001);
    expect(t.worker("a")!.alive).toBe(false);
    expect(t.worker("b")!.alive).toBe(true);
    expect(t.task("map", 0)!.state).toBe("idle");
    t.reportDone("b", "map", 1, m1.attemptId, 5_002);
  });

  it("treats a failed fetch as the map worker's death and sends the reduce task back to idle", () => {
    const t = new TaskTable(config(2, 1));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    const m1 = expectTask(t.requestTask("b", "B", 0), "map", 1);
    t.reportDone("a", "map", 0, m0.attemptId, 1);
    t.reportDone("b", "map", 1, m1.attemptId, 1);
    const r0 = expectTask(t.requestTask("b", "B", 2), "reduce", 0);
    expect(t.reportFetchFailed("b", 0, r0.attemptId, 0, "a", 3).type).toBe("accepted");
    expect(t.worker("a")!.alive).toBe(false);
    expect(t.task("reduce", 0)).toMatchObject({ state: "idle", failures: 0 });
    expectTask(t.requestTask("b", "B", 4), "map", 0);
  });

  it("retries a task whose job code throws on another worker, then fails the job at the limit", () => {
    const t = new TaskTable(config(2, 1, { maxTaskFailures: 2 }));
    const a1 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    t.requestTask("b", "B", 0); // map 1 to b, so both workers are known
    expect(t.reportJobError("a", "map", 0, a1.attemptId, "boom", 1).type).toBe("accepted");
    expect(t.phase()).toBe("map");
    // a failed map 0, and b can run it: a is not given it again.
    expect(t.requestTask("a", "A", 2)).toEqual({ type: "wait" });
    const b1 = expectTask(t.requestTask("b", "B", 3), "map", 0);
    t.reportJobError("b", "map", 0, b1.attemptId, "TypeError: x is undefined", 4);
    expect(t.phase()).toBe("failed");
    expect(t.failure()).toEqual({
      kind: "map",
      index: 0,
      input: "in-0.txt bytes 0..10",
      error: "TypeError: x is undefined",
      attempts: 2,
    });
    expect(t.requestTask("a", "A", 5)).toEqual({ type: "exit", phase: "failed" });
    expect(t.heartbeat("b", "B", 5)).toEqual({ exit: true });
  });

  it("retries on the same worker when it is the only one", () => {
    const t = new TaskTable(config(1, 1));
    const a1 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    t.reportJobError("a", "map", 0, a1.attemptId, "boom", 1);
    expectTask(t.requestTask("a", "A", 2), "map", 0);
  });

  it("ignores duplicate and bogus reports", () => {
    const t = new TaskTable(config(1, 1));
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    expect(t.reportDone("a", "map", 0, m0.attemptId, 1).type).toBe("accepted");
    expect(t.reportDone("a", "map", 0, m0.attemptId, 2).type).toBe("duplicate");
    expect(t.reportDone("a", "map", 7, 1, 2).type).toBe("rejected");
    expect(t.reportDone("a", "reduce", -1, 1, 2).type).toBe("rejected");
    expect(t.reportDone("a", "reduce", 0, 999, 2).type).toBe("duplicate");
    expect(t.task("map", 0)!.runs).toBe(1);
  });

  it("rejects a bad configuration", () => {
    expect(() => new TaskTable(config(1, 0))).toThrow(/reduces/);
    expect(() => new TaskTable(config(0, 1))).toThrow(/split/);
  });

  it("resumes from a snapshot of its persisted rows", () => {
    const t = new TaskTable(config(2, 1));
    const rows = new Map<string, unknown>();
    const persist = () => {
      const c = t.takeChanges();
      for (const task of c.tasks) rows.set(`${task.kind}:${task.index}`, task);
      for (const w of c.workers) rows.set(`w:${w.id}`, w);
      if (c.meta) rows.set("meta", c.meta);
    };
    const m0 = expectTask(t.requestTask("a", "A", 0), "map", 0);
    t.reportDone("a", "map", 0, m0.attemptId, 1);
    const m1 = expectTask(t.requestTask("b", "B", 1), "map", 1);
    persist();
    const snap: TableSnapshot = {
      tasks: [...rows.entries()]
        .filter(([k]) => !k.startsWith("w:") && k !== "meta")
        .map(([, v]) => v) as never,
      workers: [...rows.entries()].filter(([k]) => k.startsWith("w:")).map(([, v]) => v) as never,
      meta: rows.get("meta") as never,
    };
    const r = new TaskTable(config(2, 1), snap, 50);
    expect(r.task("map", 0)).toMatchObject({ state: "completed", completedBy: "a" });
    // The attempt in flight across the restart still counts.
    expect(r.reportDone("b", "map", 1, m1.attemptId, 51).type).toBe("accepted");
    const red = expectTask(r.requestTask("a", "A", 52), "reduce", 0);
    expect(red.attemptId).toBeGreaterThan(m1.attemptId);
  });

  it("finishes with every reduce reading every map's output under random crashes, stalls and delays", async () => {
    await runSeeds(
      "random task table schedules",
      async (seed) => {
        const rand = new Prng(seed).random();
        const maps = 1 + Math.floor(rand() * 8);
        const reduces = 1 + Math.floor(rand() * 4);
        const t = new TaskTable(
          config(maps, reduces, { taskTimeoutMs: 50, workerTimeoutMs: 80, backupAfterMs: 20 }),
        );
        // The world the table cannot see: which worker holds which map output, who is alive.
        const disks = new Map<string, Set<number>>();
        const alive = new Set<string>();
        const stalled = new Set<string>();
        let nextWorker = 0;
        const spawn = () => {
          const id = `w${nextWorker++}`;
          alive.add(id);
          disks.set(id, new Set());
        };
        for (let i = 0; i < 3; i++) spawn();
        const running = new Map<string, { a: Assignment & { type: "map" | "reduce" }; doneAt: number }>();
        let now = 0;
        let completedReduces = 0;
        for (let step = 0; step < 20_000 && t.phase() !== "done"; step++) {
          now += Math.floor(rand() * 5);
          const ids = [...alive];
          const id = ids[Math.floor(rand() * ids.length)]!;
          const roll = rand();
          if (roll < 0.01 && alive.size > 1) {
            alive.delete(id);
            running.delete(id);
            if (rand() < 0.5) t.workerDead(id, now); // the host saw the exit; otherwise a timeout
            spawn();
            continue;
          }
          if (roll < 0.02) {
            stalled.add(id);
            continue;
          }
          if (roll < 0.04) stalled.delete(id);
          if (stalled.has(id)) {
            t.tick(now);
            continue;
          }
          const job = running.get(id);
          if (job === undefined) {
            const a = t.requestTask(id, id, now);
            if (a.type === "map" || a.type === "reduce")
              running.set(id, { a, doneAt: now + Math.floor(rand() * 60) });
            continue;
          }
          t.heartbeat(id, id, now);
          if (now < job.doneAt) continue;
          running.delete(id);
          const { a } = job;
          if (a.type === "map") {
            disks.get(id)!.add(a.index);
            t.reportDone(id, "map", a.index, a.attemptId, now);
            continue;
          }
          const missing = a.locations.find(
            (l) => !alive.has(l.workerId) || !disks.get(l.workerId)!.has(l.mapIndex),
          );
          if (missing !== undefined) {
            t.reportFetchFailed(id, a.index, a.attemptId, missing.mapIndex, missing.workerId, now);
            continue;
          }
          expect(a.locations.length).toBe(maps);
          if (t.reportDone(id, "reduce", a.index, a.attemptId, now).type === "accepted") completedReduces++;
        }
        expect(t.phase()).toBe("done");
        expect(completedReduces).toBe(reduces);
      },
      { seeds: 200, testName: "finishes with every reduce reading every map's output" },
    );
  });
});
