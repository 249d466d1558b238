import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryStorage } from "../core/storage.js";
import { CoreCluster } from "../testing/core-cluster.js";
import { describeLogStore } from "./log-store.suite.js";
import { SqliteLogStore } from "./sqlite-log-store.js";

describeLogStore("MemoryStorage", { create: (members) => MemoryStorage.bootstrap(members) });

const dir = mkdtempSync(join(tmpdir(), "quorum-raft-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const paths = new WeakMap<object, string>();

describeLogStore("SqliteLogStore", {
  create(members) {
    const path = join(dir, `log-${n++}.db`);
    const store = new SqliteLogStore({ path, initialMembers: members });
    paths.set(store, path);
    return store;
  },
  reopen(store) {
    const path = paths.get(store)!;
    store.close();
    const again = new SqliteLogStore({ path });
    paths.set(again, path);
    return again;
  },
});

describe("SqliteLogStore under a running cluster", () => {
  it("opens with WAL and synchronous=FULL", () => {
    const s = new SqliteLogStore({ path: join(dir, "pragma.db") });
    expect(s.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(s.db.pragma("synchronous", { simple: true })).toBe(2);
    s.close();
  });

  it("three cores on SQLite logs agree, survive a full restart and compaction, and keep every committed entry", () => {
    const c = new CoreCluster(["n1", "n2", "n3"], {
      storage: (id, members) =>
        new SqliteLogStore({ path: join(dir, `cluster-${id}.db`), initialMembers: members }),
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
