import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryStorage } from "../core/storage.js";
import type { Entry } from "../core/types.js";
import { CoreCluster } from "../testing/core-cluster.js";
import { describeLogStore } from "./log-store.suite.js";
import { SqliteLogStore } from "./sqlite-log-store.js";

describeLogStore("MemoryStorage", { create: (members) => MemoryStorage.bootstrap(members) });

const dir = mkdtempSync(join(tmpdir(), "quorum-raft-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const paths = new WeakMap<object, string>();

describeLogStore("SqliteLogStore with inline writes", {
  create(members) {
    const path = join(dir, `log-${n++}.db`);
    const store = new SqliteLogStore({ path, initialMembers: members, writerThread: false });
    paths.set(store, path);
    return store;
  },
  reopen(store) {
    const path = paths.get(store)!;
    store.close();
    const again = new SqliteLogStore({ path, writerThread: false });
    paths.set(again, path);
    return again;
  },
});

describeLogStore("SqliteLogStore with a writer thread", {
  create(members) {
    const path = join(dir, `log-${n++}.db`);
    const store = new SqliteLogStore({ path, initialMembers: members, writerThread: true });
    paths.set(store, path);
    return store;
  },
  async reopen(store) {
    const path = paths.get(store)!;
    store.close(); // waits for the writer thread
    const again = new SqliteLogStore({ path, writerThread: true });
    paths.set(again, path);
    return again;
  },
});

describe("SqliteLogStore under a running cluster", () => {
  it("fsyncs only saves that must be durable, and keeps every save", () => {
    const path = join(dir, "mustsync.db");
    const s = new SqliteLogStore({
      path,
      initialMembers: [{ id: "a", address: "", learner: false }],
      writerThread: false,
    });
    const modes: number[] = [];
    const pragma = s.db.pragma.bind(s.db);
    // Records the synchronous mode in force when each save's transaction runs.
    s.db.pragma = ((source: string, options?: object) => {
      const result = pragma(source, options as never);
      if (source.startsWith("synchronous =")) modes.push(source.endsWith("NORMAL") ? 1 : 2);
      return result;
    }) as typeof s.db.pragma;
    s.save({
      hardState: { term: 1, vote: "a", commit: 0 },
      entries: [{ index: 1, term: 1, type: "normal", data: Buffer.from("x") }],
    });
    s.save({ hardState: { term: 1, vote: "a", commit: 1 } });
    expect(modes).toEqual([1, 2]); // only the commit-only save ran with NORMAL, then FULL again
    expect(pragma("synchronous", { simple: true })).toBe(2);
    s.close();
    const again = new SqliteLogStore({ path });
    expect(again.hardState()).toEqual({ term: 1, vote: "a", commit: 1 });
    expect(again.lastIndex()).toBe(1);
    again.close();
  });

  it("with a writer thread, posts a commit-only save with the next write, or at close", async () => {
    const path = join(dir, "coalesce.db");
    const members = [{ id: "a", address: "", learner: false }];
    const s = new SqliteLogStore({ path, initialMembers: members, writerThread: true });
    const entry = (index: number) => ({
      index,
      term: 1,
      type: "normal" as const,
      data: Buffer.from(`e${index}`),
    });
    await s.save({ hardState: { term: 1, vote: "a", commit: 0 }, entries: [entry(1)] });
    expect(s.save({ hardState: { term: 1, vote: "a", commit: 1 } })).toBeUndefined(); // nothing to wait for
    expect(s.hardState().commit).toBe(1);
    await s.save({ entries: [entry(2)] }); // carries the commit index along
    const reader = new SqliteLogStore({ path, writerThread: false });
    expect([reader.hardState().commit, reader.lastIndex()]).toEqual([1, 2]);
    reader.close();
    expect(s.save({ hardState: { term: 1, vote: "a", commit: 2 } })).toBeUndefined();
    s.close(); // writes it
    const again = new SqliteLogStore({ path });
    expect(again.hardState()).toEqual({ term: 1, vote: "a", commit: 2 });
    expect(again.entries(1, 3).map((e) => Buffer.from(e.data).toString())).toEqual(["e1", "e2"]);
    again.close();
  });

  it("opens with WAL and synchronous=FULL", () => {
    const s = new SqliteLogStore({ path: join(dir, "pragma.db") });
    expect(s.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(s.db.pragma("synchronous", { simple: true })).toBe(2);
    s.close();
  });

  it("three cores on SQLite logs agree, survive a full restart and compaction, and keep every committed entry", () => {
    const c = new CoreCluster(["n1", "n2", "n3"], {
      storage: (id, members) =>
        // The core cluster persists synchronously: inline writes.
        new SqliteLogStore({
          path: join(dir, `cluster-${id}.db`),
          initialMembers: members,
          writerThread: false,
        }),
    });
    c.campaign("n1");
    for (let i = 0; i < 10; i++) c.propose(`p${i}`);
    c.stabilize();
    c.node("n1").storage.compact(c.raft("n1").log.applied);
    for (const id of ["n1", "n2", "n3"]) c.crash(id);
    for (const id of ["n1", "n2", "n3"]) c.restart(id);
    for (let i = 0; i < 40 && !c.leader(); i++) {
      c.tick();
      c.stabilize();
    }
    c.propose("after");
    c.stabilize();
    c.tick();
    c.stabilize();
    for (const id of ["n1", "n2", "n3"]) {
      expect(c.appliedCommands(id)).toEqual([...Array.from({ length: 10 }, (_, i) => `p${i}`), "after"]);
      c.node(id).storage.close();
    }
  });
});

describe("SqliteLogStore matches MemoryStorage on random operation sequences (differential)", () => {
  it("same answers for entries, terms, bounds and snapshots, with a tiny entry cache", () => {
    const members = [{ id: "n1", address: "a", learner: false }];
    let run = 0;
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              op: fc.constant("append" as const),
              back: fc.nat(5),
              count: fc.integer({ min: 1, max: 6 }),
              term: fc.integer({ min: 1, max: 9 }),
            }),
            fc.record({ op: fc.constant("compact" as const), back: fc.nat(8) }),
            fc.record({ op: fc.constant("snapshot" as const), ahead: fc.integer({ min: 1, max: 5 }) }),
          ),
          { maxLength: 25 },
        ),
        (ops) => {
          const mem = MemoryStorage.bootstrap(members);
          const sql = new SqliteLogStore({
            path: join(dir, `diff-${run++}.db`),
            initialMembers: members,
            cacheEntries: 3,
            writerThread: false,
          });
          try {
            for (const o of ops) {
              if (o.op === "append") {
                const first = Math.max(mem.firstIndex(), mem.lastIndex() + 1 - o.back);
                const entries: Entry[] = Array.from({ length: o.count }, (_, i) => ({
                  index: first + i,
                  term: o.term,
                  type: "normal",
                  data: new Uint8Array([first + i, o.term]),
                }));
                mem.save({ entries });
                sql.save({ entries });
              } else if (o.op === "compact") {
                const index = mem.lastIndex() - o.back;
                if (index > mem.snapshot().index) {
                  mem.compact(index);
                  sql.compact(index);
                }
              } else {
                const snapshot = { index: mem.lastIndex() + o.ahead, term: 9, members };
                mem.save({ snapshot });
                sql.save({ snapshot });
              }
              expect([sql.firstIndex(), sql.lastIndex()]).toEqual([mem.firstIndex(), mem.lastIndex()]);
              expect(sql.snapshot()).toEqual(mem.snapshot());
              for (let i = mem.firstIndex() - 1; i <= mem.lastIndex() + 1; i++)
                expect(sql.term(i)).toBe(mem.term(i));
              for (let lo = mem.firstIndex(); lo <= mem.lastIndex(); lo++) {
                expect(sql.entries(lo, mem.lastIndex() + 1, 60)).toEqual(
                  mem.entries(lo, mem.lastIndex() + 1, 60),
                );
              }
            }
          } finally {
            sql.close();
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
