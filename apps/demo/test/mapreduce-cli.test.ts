import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

describe("quorum mapreduce run", () => {
  let dir: string;
  const quorum = (...args: string[]) =>
    spawnSync(process.execPath, [cli, "mapreduce", "run", ...args], {
      cwd: dir,
      encoding: "utf8",
      timeout: 60_000,
    });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "quorum-mr-cli-"));
    mkdirSync(join(dir, "in"));
    writeFileSync(join(dir, "in", "a.txt"), "Der Hund und die Katze\nder Hund\n");
    writeFileSync(join(dir, "in", "b.txt"), "die Katze, die Maus; Straße!\n");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("counts words with worker processes and writes sorted mr-out files", () => {
    const r = quorum(
      "--job",
      "wordcount",
      "--input",
      "in/*.txt",
      "--reduces",
      "2",
      "--workers",
      "2",
      "--out",
      "out",
    );
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/job done in .* 2 map and 2 reduce tasks/);
    const files = readdirSync(join(dir, "out"))
      .filter((f) => f.startsWith("mr-out-"))
      .sort();
    expect(files).toEqual(["mr-out-0", "mr-out-1"]);
    const counts = new Map<string, number>();
    for (const f of files) {
      const lines = readFileSync(join(dir, "out", f), "utf8")
        .trim()
        .split("\n");
      const keys = lines.map((l) => l.split(" ")[0]!);
      expect(keys).toEqual([...keys].sort());
      for (const line of lines) {
        const [word, n] = line.split(" ");
        counts.set(word!, Number(n));
      }
    }
    // Words are maximal runs of Unicode letters, case kept.
    expect(Object.fromEntries(counts)).toEqual({
      Der: 1,
      der: 1,
      Hund: 2,
      und: 1,
      die: 3,
      Katze: 2,
      Maus: 1,
      Straße: 1,
    });
  });

  it.each([
    [["--job", "wordcount", "--input", "missing/*.txt"], /no file matches missing\/\*\.txt/, 1],
    [["--job", "./no-such-job.js", "--input", "in/*.txt"], /neither a built-in job/, 1],
    [
      ["--job", "wordcount", "--input", "in/*.txt", "--reduces", "0"],
      /--reduces must be a positive integer/,
      2,
    ],
  ])("refuses %j with one line", (args, message, code) => {
    const r = quorum(...args);
    expect(r.status).toBe(code);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });
});
