import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { SlotEntry } from "../core/types.js";
import { type AcceptorStore, MemoryAcceptorStore } from "./acceptor-store.js";
import { SqliteAcceptorStore } from "./sqlite-acceptor-store.js";

const enc = new TextEncoder();
const entry = (slot: number, round: number, s: string): SlotEntry => ({
  slot,
  ballot: { round, node: "n1" },
  value: { id: `${s}@${round}`, commands: [enc.encode(s)] },
});

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Each kind of store, with a way to reopen it as a restarted node would. */
const kinds: { name: string; open: () => { store: AcceptorStore; reopen: () => AcceptorStore } }[] = [
  {
    name: "memory",
    open: () => {
      const store = new MemoryAcceptorStore();
      return { store, reopen: () => store };
    },
  },
  {
    name: "sqlite",
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), "paxos-store-"));
      dirs.push(dir);
      const path = join(dir, "acceptor.db");
      return { store: new SqliteAcceptorStore(path), reopen: () => new SqliteAcceptorStore(path) };
    },
  },
];

for (const kind of kinds) {
  describe(`${kind.name} acceptor store`, () => {
    it("starts empty: no promise, nothing accepted or chosen", () => {
      const { store } = kind.open();
      const s = store.load();
      expect(s.promised).toEqual({ round: 0, node: "" });
      expect(s.accepted.size).toBe(0);
      expect(s.chosen.size).toBe(0);
      store.close();
    });

    it("keeps the promised ballot, accepted pairs and chosen values across a reopen", () => {
      const { store, reopen } = kind.open();
      store.save({
        promised: { round: 3, node: "n2" },
        accepted: [entry(1, 3, "a"), entry(2, 3, "b")],
        chosen: [],
      });
      store.save({ accepted: [], chosen: [{ slot: 1, value: entry(1, 3, "a").value }] });
      store.close();
      const again = reopen();
      const s = again.load();
      expect(s.promised).toEqual({ round: 3, node: "n2" });
      expect([...s.accepted.keys()].sort()).toEqual([1, 2]);
      expect(s.accepted.get(2)?.ballot).toEqual({ round: 3, node: "n1" });
      expect(new TextDecoder().decode(s.accepted.get(2)!.value.commands[0]!)).toBe("b");
      expect(s.chosen.get(1)?.id).toBe("a@3");
      again.close();
    });

    it("a later accept in a slot replaces the earlier one (only the latest accepted pair matters)", () => {
      const { store, reopen } = kind.open();
      store.save({ accepted: [entry(1, 1, "old")], chosen: [] });
      store.save({ accepted: [entry(1, 4, "new")], chosen: [] });
      store.close();
      const again = reopen();
      expect(again.load().accepted.get(1)?.value.id).toBe("new@4");
      again.close();
    });

    it("a no-op value (no commands) round-trips", () => {
      const { store, reopen } = kind.open();
      store.save({
        accepted: [{ slot: 5, ballot: { round: 2, node: "n3" }, value: { id: "noop", commands: [] } }],
        chosen: [],
      });
      store.close();
      const again = reopen();
      expect(again.load().accepted.get(5)?.value).toEqual({ id: "noop", commands: [] });
      again.close();
    });

    it("compaction drops accepted and chosen entries up to its slot, in the same save, and survives a reopen", () => {
      const { store, reopen } = kind.open();
      store.save({
        accepted: [entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")],
        chosen: [{ slot: 1, value: entry(1, 1, "a").value }],
      });
      store.save({
        accepted: [entry(4, 1, "d")],
        chosen: [
          { slot: 2, value: entry(2, 1, "b").value },
          { slot: 3, value: entry(3, 1, "c").value },
        ],
        compact: { slot: 2, index: 7 },
      });
      // An older compaction point never moves it back.
      store.save({ accepted: [], chosen: [], compact: { slot: 1, index: 3 } });
      store.close();
      const again = reopen();
      const s = again.load();
      expect(s.compacted).toEqual({ slot: 2, index: 7 });
      expect([...s.accepted.keys()].sort()).toEqual([3, 4]);
      expect([...s.chosen.keys()]).toEqual([3]);
      again.close();
    });

    it("refuses to save after close", () => {
      const { store } = kind.open();
      store.close();
      expect(() => store.save({ accepted: [], chosen: [] })).toThrow(/closed/);
    });
  });
}

it("sqlite acceptor store runs in WAL mode with synchronous=FULL", () => {
  const dir = mkdtempSync(join(tmpdir(), "paxos-store-"));
  dirs.push(dir);
  const store = new SqliteAcceptorStore(join(dir, "a.db"));
  const db = (store as unknown as { db: { pragma(s: string, o: { simple: true }): unknown } }).db;
  expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
  expect(db.pragma("synchronous", { simple: true })).toBe(2);
  store.close();
});
