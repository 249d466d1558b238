import { describe, expect, it } from "vitest";
import { collectIntermediate, runMapTask, runReduce } from "./exec.js";
import { defaultPartition } from "./hash.js";
import type { JobModule } from "./job.js";
import * as indexer from "./jobs/indexer.js";
import * as wordcount from "./jobs/wordcount.js";

describe("map and reduce execution", () => {
  it("counts words as maximal runs of Unicode letters, keeping case", () => {
    const parts = runMapTask(wordcount, "f", "Straße, straße! 東京x don't Ελλάδα\n42 Ελλάδα", 1);
    const grouped = new Map<string, string[]>();
    collectIntermediate(parts[0]!, grouped);
    expect(runReduce(wordcount, grouped)).toBe(
      ["don 1", "straße 1", "t 1", "Ελλάδα 2", "Straße 1", "東京x 1"].sort().join("\n") + "\n",
    );
  });

  it("partitions by a stable hash and round-trips keys and values with tabs, newlines and backslashes", () => {
    const job: JobModule = {
      map: () => [
        ["a\tb", "x\ny"],
        ["c\\d", "\\t"],
        ["plain", "v"],
      ],
      reduce: (_k, v) => v.join("|"),
    };
    const parts = runMapTask(job, "f", "", 3);
    const grouped = new Map<string, string[]>();
    parts.forEach((p, r) => {
      const one = new Map<string, string[]>();
      collectIntermediate(p, one);
      for (const k of one.keys()) expect(defaultPartition(k, 3)).toBe(r);
      for (const [k, v] of one) grouped.set(k, v);
    });
    expect(grouped).toEqual(
      new Map([
        ["a\tb", ["x\ny"]],
        ["c\\d", ["\\t"]],
        ["plain", ["v"]],
      ]),
    );
    expect(defaultPartition("plain", 7)).toBe(defaultPartition("plain", 7));
  });

  it("folds values with the combiner as they arrive", () => {
    let calls = 0;
    const job: JobModule = {
      *map() {
        for (let i = 0; i < 1000; i++) yield ["k", "1"] as const;
      },
      reduce: (_k, v) => String(v.reduce((n, x) => n + Number(x), 0)),
      combine: (_k, v) => {
        calls++;
        return String(v.reduce((n, x) => n + Number(x), 0));
      },
    };
    const [part] = runMapTask(job, "f", "", 1);
    expect(part).toBe("k\t1000\n");
    expect(calls).toBeGreaterThan(10);
  });

  it("merges indexer file lists from combined and plain values", () => {
    expect(indexer.reduce("w", ["b.txt,a.txt", "c.txt", "a.txt"])).toBe("a.txt,b.txt,c.txt");
  });

  it("names the job function that threw, in one line", () => {
    const job: JobModule = {
      map: () => {
        throw new TypeError("bad\nsecond line");
      },
      reduce: () => "",
    };
    expect(() => runMapTask(job, "f", "", 1)).toThrow(/^map threw TypeError: bad$/);
    const bad: JobModule = { map: () => [["k", "v"]], reduce: () => "", partition: () => 5 };
    expect(() => runMapTask(bad, "f", "", 2)).toThrow(/partition returned 5/);
  });
});
