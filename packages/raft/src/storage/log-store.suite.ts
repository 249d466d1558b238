import { describe, expect, it } from "vitest";
import { encodeConfChange } from "../core/config.js";
import type { LogStore } from "../core/storage.js";
import { EMPTY_HARD_STATE, type Entry, type RaftMember } from "../core/types.js";

export interface LogStoreFactory {
  /** A fresh, empty store bootstrapped with `members`. */
  create(members: readonly RaftMember[]): LogStore;
  /** Closes `store` and opens it again from its durable state (undefined: not durable). */
  reopen?(store: LogStore): LogStore | Promise<LogStore>;
}

const members: RaftMember[] = [
  { id: "n1", address: "a:1", learner: false },
  { id: "n2", address: "a:2", learner: false },
];

function ents(from: number, terms: number[]): Entry[] {
  return terms.map((term, i) => ({
    index: from + i,
    term,
    type: "normal",
    data: new Uint8Array([from + i]),
  }));
}

/**
 * The behaviour every LogStore shares: run against the in-memory and the SQLite ones. Each save
 * is awaited, as the host does (a store may sync off the event loop).
 */
export function describeLogStore(name: string, factory: LogStoreFactory): void {
  describe(`LogStore contract: ${name}`, () => {
    it("starts empty with the bootstrap configuration", async () => {
      const s = factory.create(members);
      expect(s.hardState()).toEqual(EMPTY_HARD_STATE);
      expect(s.firstIndex()).toBe(1);
      expect(s.lastIndex()).toBe(0);
      expect(s.term(0)).toBe(0);
      expect(s.term(1)).toBeUndefined();
      expect(s.snapshot().members).toEqual(members);
      s.close();
    });

    it("saves entries and hard state together and reads them back", async () => {
      const s = factory.create(members);
      await s.save({ entries: ents(1, [1, 1, 2]), hardState: { term: 2, vote: "n1", commit: 2 } });
      expect(s.lastIndex()).toBe(3);
      expect(s.term(3)).toBe(2);
      expect(s.hardState()).toEqual({ term: 2, vote: "n1", commit: 2 });
      expect(s.entries(1, 4).map((e) => [e.index, e.term, e.data[0]])).toEqual([
        [1, 1, 1],
        [2, 1, 2],
        [3, 2, 3],
      ]);
      s.close();
    });

    it("limits entries by bytes but always returns at least one", async () => {
      const s = factory.create(members);
      await s.save({ entries: ents(1, [1, 1, 1, 1]) });
      expect(s.entries(1, 5, 1)).toHaveLength(1);
      expect(s.entries(1, 5, 50)).toHaveLength(2);
      s.close();
    });

    it("truncates a conflicting suffix when entries are saved from an earlier index", async () => {
      const s = factory.create(members);
      await s.save({ entries: ents(1, [1, 1, 1, 1]) });
      await s.save({ entries: ents(3, [2]) });
      expect(s.lastIndex()).toBe(3);
      expect(s.term(3)).toBe(2);
      expect(s.term(4)).toBeUndefined();
      s.close();
    });

    it("refuses a gap or an overwrite of compacted entries, leaving the store unchanged", async () => {
      const s = factory.create(members);
      await s.save({ entries: ents(1, [1, 1, 1]) });
      expect(() => s.save({ entries: ents(5, [1]) })).toThrow(/gap/);
      s.compact(2);
      expect(() => s.save({ entries: ents(2, [3]) })).toThrow(/compacted/);
      expect(s.lastIndex()).toBe(3);
      expect(s.term(3)).toBe(1);
      s.close();
    });

    it("compacts: earlier entries are gone, the snapshot keeps the term and configuration there", async () => {
      const s = factory.create(members);
      const change: Entry = {
        index: 2,
        term: 1,
        type: "config",
        data: encodeConfChange({ type: "addLearner", id: "n3", address: "a:3" }),
      };
      await s.save({ entries: [...ents(1, [1]), change, ...ents(3, [2, 2])] });
      s.compact(3);
      expect(s.firstIndex()).toBe(4);
      expect(s.term(3)).toBe(2);
      expect(s.term(2)).toBeUndefined();
      expect(() => s.entries(2, 4)).toThrow(/compacted/);
      expect(s.snapshot().members.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
      expect(s.entries(4, 5).map((e) => e.index)).toEqual([4]);
      expect(s.configEntries()).toEqual([]);
      s.close();
    });

    it("lists the config entries after the snapshot", async () => {
      const s = factory.create(members);
      const change: Entry = {
        index: 2,
        term: 1,
        type: "config",
        data: encodeConfChange({ type: "remove", id: "n2" }),
      };
      await s.save({ entries: [...ents(1, [1]), change, ...ents(3, [1])] });
      expect(s.configEntries().map((e) => e.index)).toEqual([2]);
      expect(s.configEntries()[0]!.data).toEqual(change.data);
      s.close();
    });

    it("installing a snapshot replaces the whole log", async () => {
      const s = factory.create(members);
      await s.save({ entries: ents(1, [1, 1, 1]) });
      const snapshot = { index: 10, term: 3, members: [members[0]!] };
      await s.save({ snapshot, entries: ents(11, [3]), hardState: { term: 3, vote: "", commit: 10 } });
      expect(s.firstIndex()).toBe(11);
      expect(s.lastIndex()).toBe(11);
      expect(s.term(10)).toBe(3);
      expect(s.term(3)).toBeUndefined();
      expect(s.snapshot()).toEqual(snapshot);
      s.close();
    });

    if (factory.reopen) {
      const reopen = factory.reopen;
      it("recovers hard state, entries and snapshot after reopening", async () => {
        let s = factory.create(members);
        await s.save({ entries: ents(1, [1, 1, 2, 2]), hardState: { term: 2, vote: "n2", commit: 3 } });
        s.compact(2);
        s = await reopen(s);
        expect(s.hardState()).toEqual({ term: 2, vote: "n2", commit: 3 });
        expect(s.firstIndex()).toBe(3);
        expect(s.lastIndex()).toBe(4);
        expect(s.term(2)).toBe(1);
        expect(s.entries(3, 5).map((e) => e.term)).toEqual([2, 2]);
        expect(s.snapshot().members).toEqual(members);
        s.close();
      });
    }
  });
}
