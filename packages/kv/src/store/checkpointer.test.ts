import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { WalCheckpointer } from "./checkpointer.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function openStore(): { db: Database.Database; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "quorum-ckpt-"));
  dirs.push(dir);
  const path = join(dir, "kv.db");
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("wal_autocheckpoint = 0");
  db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
  return { db, path };
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("WalCheckpointer", () => {
  it("copies the WAL into the database file from its own thread", async () => {
    const { db, path } = openStore();
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    for (let i = 0; i < 500; i++) insert.run(i, Buffer.alloc(2048, i));
    const before = statSync(path).size;
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(1_000_000); // nothing checkpointed yet
    const checkpointer = new WalCheckpointer(path, { intervalMs: 10 });
    try {
      await until(() => statSync(path).size > before + 1_000_000);
      // After a checkpoint that caught up, the next commit starts the WAL over.
      insert.run(1_000, Buffer.alloc(10));
      const [r] = db.pragma("wal_checkpoint(PASSIVE)") as { log: number }[];
      expect(r!.log).toBeLessThan(10);
    } finally {
      expect(checkpointer.close()).toBe(true);
      db.close();
    }
  });

  it.each([
    ["a millisecond between every 10", 10],
    ["never a pause", 0],
  ])("bounds the WAL while commits go on (%s)", async (_, pauseEvery) => {
    const { db, path } = openStore();
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    const checkpointer = new WalCheckpointer(path, { intervalMs: 5, maxWalPages: 200 });
    try {
      // Once the worker has checkpointed a first commit (it is running)...
      const empty = statSync(path).size;
      insert.run(-1, Buffer.alloc(64 * 1024));
      await until(() => statSync(path).size > empty + 64 * 1024);
      // ...10,000 commits of 4 KiB (40 MiB), the store's check after each.
      for (let i = 0; i < 10_000; i++) {
        insert.run(i, Buffer.alloc(4096, i));
        checkpointer.checkpointIfBehind(db);
        if (pauseEvery > 0 && i % pauseEvery === pauseEvery - 1) await new Promise((r) => setTimeout(r, 1));
      }
      // The WAL file keeps its largest size; without checkpoints it would hold all 40 MiB.
      expect(statSync(`${path}-wal`).size).toBeLessThan(16 * 1024 * 1024);
      expect(db.prepare("SELECT COUNT(*) AS n FROM t").get()).toEqual({ n: 10_001 });
    } finally {
      expect(checkpointer.close()).toBe(true);
      db.close();
    }
  });

  it("closes at once when its worker could not open the file", () => {
    const checkpointer = new WalCheckpointer(join(tmpdir(), "no-such-dir-quorum", "kv.db"));
    // The worker marks itself closed when it cannot open the file: no wait runs out.
    expect(checkpointer.close(5_000)).toBe(true);
  });
});
