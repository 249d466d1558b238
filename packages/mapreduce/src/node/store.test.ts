import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TaskTable } from "../core/task-table.js";
import { type JobRecord, TaskStore } from "./store.js";

const dir = mkdtempSync(join(tmpdir(), "quorum-mr-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("TaskStore", () => {
  it("persists the table row by row and loads it back after a reopen", () => {
    const splits = [0, 1, 2].map((i) => ({ path: `/in/${i}`, fileName: `${i}`, offset: 0, length: 5 }));
    const config = {
      splits,
      reduces: 2,
      taskTimeoutMs: 1_000,
      workerTimeoutMs: 1_000,
      backupAfterMs: 500,
      maxTaskFailures: 3,
    };
    const job: JobRecord = {
      job: "wordcount",
      options: {},
      inputs: ["in/*"],
      reduces: 2,
      outDir: "/out",
      splits,
    };
    const path = join(dir, "state.sqlite");
    const store = new TaskStore(path);
    const table = new TaskTable(config);
    store.create(job, table.takeChanges());
    const a = table.requestTask("w1", "127.0.0.1:1", 0);
    store.save(table.takeChanges());
    if (a.type !== "map") throw new Error("expected a map task");
    table.reportDone("w1", "map", a.index, a.attemptId, 1);
    table.requestTask("w2", "127.0.0.1:2", 2);
    store.save(table.takeChanges());
    store.close();

    const reopened = new TaskStore(path);
    expect(reopened.loadJob()).toEqual(job);
    const snapshot = reopened.loadSnapshot()!;
    reopened.close();
    const restored = new TaskTable(config, snapshot, 100);
    expect(restored.progress()).toEqual(table.progress());
    expect(restored.task("map", 0)).toMatchObject({
      state: "completed",
      completedBy: "w1",
      completedAddress: "127.0.0.1:1",
    });
    expect(restored.task("map", 1)!.attempts).toEqual([
      { id: 2, workerId: "w2", startedAt: 100, expired: false },
    ]);
    expect(restored.liveWorkers().sort()).toEqual(["w1", "w2"]);
  });
});
