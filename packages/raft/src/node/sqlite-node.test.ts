import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SqliteLogStore } from "../storage/sqlite-log-store.js";
import { NodeCluster } from "./test-cluster.js";

const dir = mkdtempSync(join(tmpdir(), "quorum-raft-node-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("RaftNode on SQLite logs", () => {
  it("keeps every acknowledged command when all nodes stop and start again from their files", async () => {
    const ids = ["n1", "n2", "n3"];
    const cluster = new NodeCluster(ids, {}, (id) => new SqliteLogStore({ path: join(dir, `${id}.db`) }));
    try {
      await cluster.start();
      const leader = await cluster.waitForLeader();
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => cluster.node(leader).propose(Buffer.from(`c${i}`))),
      );
      expect(results).toHaveLength(30);
      for (const id of ids) await cluster.stop(id);
      for (const id of ids) await cluster.restart(id);
      const next = await cluster.waitForLeader();
      await cluster.node(next).propose(Buffer.from("after"));
      await cluster.waitUntil("all applied", () =>
        ids.every((id) => cluster.slot(id).machine.commands.length === 31),
      );
      for (const id of ids) {
        expect(cluster.slot(id).machine.commands).toEqual([
          ...Array.from({ length: 30 }, (_, i) => `c${i}`),
          "after",
        ]);
        const store = cluster.slot(id).storage;
        expect(store.lastIndex()).toBeGreaterThanOrEqual(32);
        expect(store.hardState().term).toBeGreaterThanOrEqual(2);
      }
    } finally {
      await cluster.close();
    }
  });
});
