import { describe, expect, it } from "vitest";
import { SimDisk } from "./disk.js";
import { Prng } from "./prng.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("SimDisk", () => {
  it("reads see unsynced writes; a crash keeps synced data and loses the rest", () => {
    const disk = new SimDisk(new Prng(1));
    const log = disk.file("log");
    log.append(enc("a"));
    log.append(enc("b"));
    log.sync();
    log.append(enc("c"));
    disk.file("meta").writeAll(enc("term=3"));
    expect(dec(log.read())).toBe("abc");
    disk.crash();
    expect(dec(disk.file("log").read())).toBe("ab");
    expect(dec(disk.file("meta").read())).toBe("");
    expect(disk.counters.lostWrites).toBe(2);
  });

  it("writeAll and truncate are writes like any other", () => {
    const disk = new SimDisk(new Prng(1));
    const f = disk.file("f");
    f.writeAll(enc("hello world"));
    f.truncate(5);
    expect(dec(f.read())).toBe("hello");
    expect(f.size()).toBe(5);
    f.sync();
    f.truncate(0);
    disk.crash();
    expect(dec(disk.file("f").read())).toBe("hello");
    expect(() => disk.file("f").truncate(-1)).toThrow(RangeError);
  });

  it("handles from before a crash are fenced", () => {
    const disk = new SimDisk(new Prng(1));
    const old = disk.file("f");
    old.append(enc("x"));
    old.sync();
    disk.crash();
    old.append(enc("zombie"));
    old.sync();
    expect(dec(disk.file("f").read())).toBe("x");
    expect(disk.counters.fencedWrites).toBe(1);
  });

  it("with torn writes, a crash keeps a prefix of the unsynced writes, sometimes torn mid-append", () => {
    const outcomes = new Set<string>();
    for (let seed = 0; seed < 200; seed++) {
      const disk = new SimDisk(new Prng(seed), { tornWrites: true });
      const f = disk.file("log");
      f.append(enc("AAAA"));
      f.sync();
      f.append(enc("BBBB"));
      f.append(enc("CCCC"));
      disk.crash();
      const got = dec(disk.file("log").read());
      expect(got).toMatch(/^AAAA(B{0,4}|BBBBC{0,4})$/);
      outcomes.add(got);
    }
    expect(outcomes).toContain("AAAA");
    expect(outcomes).toContain("AAAABBBB");
    expect([...outcomes].some((o) => o.length > 4 && o.length % 4 !== 0)).toBe(true);
  });

  it("delete and list", () => {
    const disk = new SimDisk(new Prng(1));
    disk.file("b").sync();
    disk.file("a").append(enc("x"));
    expect(disk.list()).toEqual(["a", "b"]);
    disk.delete("b");
    expect(disk.exists("b")).toBe(false);
  });
});
