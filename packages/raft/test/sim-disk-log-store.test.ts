import { Prng, SimDisk } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import type { Entry, LogStore } from "../src/index.js";
import { describeLogStore } from "../src/storage/log-store.suite.js";
import { SimDiskLogStore } from "../src/testing/index.js";

const members = [
  { id: "n1", address: "a:1", learner: false },
  { id: "n2", address: "a:2", learner: false },
];

function ents(from: number, terms: number[]): Entry[] {
  return terms.map((term, i) => ({
    index: from + i,
    term,
    type: "normal",
    data: new Uint8Array([from + i, term]),
  }));
}

// Each store gets its own disk; "reopen" is a crash (only synced bytes survive) and a fresh open.
const disks = new WeakMap<LogStore, SimDisk>();
let n = 0;
describeLogStore("SimDiskLogStore", {
  create(initialMembers) {
    const disk = new SimDisk(new Prng(n++));
    const store = new SimDiskLogStore(disk.file("raft.log"), { initialMembers });
    disks.set(store, disk);
    return store;
  },
  reopen(store) {
    const disk = disks.get(store)!;
    store.close();
    disk.crash();
    const again = new SimDiskLogStore(disk.file("raft.log"));
    disks.set(again, disk);
    return again;
  },
});

describe("SimDiskLogStore crash semantics", () => {
  const open = (disk: SimDisk) => new SimDiskLogStore(disk.file("raft.log"), { initialMembers: members });

  it("a crash between write and sync loses the update; a synced one survives", () => {
    const disk = new SimDisk(new Prng(1));
    const s = open(disk);
    s.save({ entries: ents(1, [1, 1]), hardState: { term: 1, vote: "n1", commit: 1 } });
    s.write({ entries: ents(3, [2]), hardState: { term: 2, vote: "n2", commit: 2 } });
    expect(s.lastIndex()).toBe(3); // visible before the sync
    expect(s.pendingWrites()).toBe(1);
    disk.crash();
    const again = open(disk);
    expect(again.lastIndex()).toBe(2);
    expect(again.hardState()).toEqual({ term: 1, vote: "n1", commit: 1 });
    expect(again.snapshot().members).toEqual(members);
  });

  it("save() is durable on return; the old incarnation's handle is fenced after a crash", () => {
    const disk = new SimDisk(new Prng(2));
    const s = open(disk);
    s.save({ entries: ents(1, [1]), hardState: { term: 1, vote: "n2", commit: 0 } });
    disk.crash();
    s.save({ entries: ents(2, [1]) }); // the dead incarnation: ignored by the disk
    const again = open(disk);
    expect(again.lastIndex()).toBe(1);
    expect(again.hardState().vote).toBe("n2");
    expect(disk.counters.fencedWrites).toBeGreaterThan(0);
  });

  it("compaction is durable, also when it rewrites the file as one checkpoint", () => {
    const disk = new SimDisk(new Prng(3));
    const s = open(disk);
    const big = new Uint8Array(4096);
    for (let i = 1; i <= 40; i++) s.save({ entries: [{ index: i, term: 1, type: "normal", data: big }] });
    s.compact(10); // small file still: a compact record
    s.compact(35); // past the rewrite threshold: a checkpoint
    const size = disk.file("raft.log").size();
    expect(size).toBeLessThan(40 * 4096);
    disk.crash();
    const again = open(disk);
    expect(again.firstIndex()).toBe(36);
    expect(again.lastIndex()).toBe(40);
    expect(again.term(35)).toBe(1);
    expect(again.snapshot().members).toEqual(members);
    expect(again.entries(36, 41)).toHaveLength(5);
  });

  it("with torn writes, a crash keeps a prefix of whole updates and cuts off a torn record", () => {
    let torn = 0;
    let partial = 0;
    for (let seed = 0; seed < 200; seed++) {
      const disk = new SimDisk(new Prng(seed), { tornWrites: true });
      const s = open(disk);
      s.save({ entries: ents(1, [1]), hardState: { term: 1, vote: "", commit: 0 } });
      for (let i = 2; i <= 6; i++)
        s.write({ entries: ents(i, [i]), hardState: { term: i, vote: "", commit: 0 } });
      disk.crash();
      const again = open(disk);
      const last = again.lastIndex();
      expect(last).toBeGreaterThanOrEqual(1);
      expect(last).toBeLessThanOrEqual(6);
      // Whole updates only: entries and hard state of one write travel together.
      expect(again.hardState().term).toBe(last);
      for (let i = 1; i <= last; i++) expect(again.term(i)).toBe(i);
      if (again.tornBytes > 0) torn++;
      if (last > 1 && last < 6) partial++;
      // Writing after recovery appends after the valid prefix, and survives a crash.
      again.save({ entries: ents(last + 1, [9]) });
      disk.crash();
      const third = open(disk);
      expect(third.lastIndex()).toBe(last + 1);
      expect(third.term(last + 1)).toBe(9);
      expect(third.tornBytes).toBe(0);
    }
    expect(torn).toBeGreaterThan(0);
    expect(partial).toBeGreaterThan(0);
  });
});
