import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { computeSplits, expandInputs, glob } from "./input.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "quorum-mr-input-"));
  mkdirSync(join(dir, "a", "b"), { recursive: true });
  for (const f of ["x.txt", "y.txt", "z.md", ".hidden.txt", "a/one.txt", "a/b/two.txt"])
    writeFileSync(join(dir, f), f);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("inputs", () => {
  it("expands *, ?, [..] and ** globs, skipping hidden files", () => {
    expect(glob("*.txt", dir)).toEqual(["x.txt", "y.txt"]);
    expect(glob("?.*", dir)).toEqual(["x.txt", "y.txt", "z.md"]);
    expect(glob("[xz].*", dir)).toEqual(["x.txt", "z.md"]);
    expect(glob("**/*.txt", dir)).toEqual(["a/b/two.txt", "a/one.txt", "x.txt", "y.txt"]);
    expect(glob(`${dir}/a/*.txt`)).toEqual([`${dir}/a/one.txt`]);
  });

  it("keeps the user's names and drops duplicates", () => {
    const files = expandInputs(["*.txt", "x.txt"], dir);
    expect(files.map((f) => f.fileName)).toEqual(["x.txt", "y.txt"]);
    expect(files[0]!.path).toBe(join(dir, "x.txt"));
  });

  it("cuts large files at line boundaries only, covering every byte once", () => {
    const path = join(dir, "lines.txt");
    const lines = Array.from({ length: 500 }, (_, i) => `line ${i} ${"é".repeat(i % 17)}`);
    writeFileSync(path, lines.join("\n")); // no final newline
    const [file] = expandInputs([path]);
    const splits = computeSplits([file!], 300);
    expect(splits.length).toBeGreaterThan(10);
    const bytes = readFileSync(path);
    let next = 0;
    for (const s of splits) {
      expect(s.offset).toBe(next);
      next = s.offset + s.length;
      if (next < bytes.length) expect(bytes[next - 1]).toBe(10);
    }
    expect(next).toBe(bytes.length);
    const joined = splits.map((s) => bytes.subarray(s.offset, s.offset + s.length).toString("utf8")).join("");
    expect(joined).toBe(lines.join("\n"));
  });

  it("keeps a long line whole", () => {
    const path = join(dir, "long.txt");
    writeFileSync(path, `${"a".repeat(1000)}\nshort\n`);
    const splits = computeSplits(expandInputs([path]), 100);
    expect(splits.map((s) => s.length)).toEqual([1001, 6]);
  });
});
