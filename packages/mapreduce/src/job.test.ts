import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MapReduceError } from "./errors.js";
import { loadJob, resolveJobName } from "./job.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "quorum-mr-job-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function failure(job: string, options: Record<string, string> = {}): Promise<[string, string]> {
  const e = await loadJob(job, options).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(MapReduceError);
  return [(e as MapReduceError).code, (e as Error).message];
}

describe("job modules", () => {
  it("loads built-ins by name and user modules by path, including a default export", async () => {
    expect(typeof (await loadJob("wordcount")).map).toBe("function");
    const path = join(dir, "default.mjs");
    writeFileSync(path, "export default { map: () => [], reduce: () => '' };");
    expect(typeof (await loadJob(path)).reduce).toBe("function");
    expect(resolveJobName("indexer")).toBe("indexer");
    expect(resolveJobName("default.mjs", dir)).toBe(path);
  });

  it("rejects modules that are missing, broken, or lack map and reduce", async () => {
    const noReduce = join(dir, "no-reduce.mjs");
    writeFileSync(noReduce, "export function map() { return []; }");
    expect(await failure(noReduce)).toEqual([
      "BAD_JOB",
      `job module ${noReduce} must export functions map and reduce`,
    ]);
    const broken = join(dir, "broken.mjs");
    writeFileSync(broken, "export function map( {");
    const [code, message] = await failure(broken);
    expect(code).toBe("BAD_JOB");
    expect(message).toMatch(/^cannot load job module .*broken\.mjs: /);
    const badCombine = join(dir, "bad-combine.mjs");
    writeFileSync(
      badCombine,
      "export const map = () => []; export const reduce = () => ''; export const combine = 3;",
    );
    expect((await failure(badCombine))[1]).toMatch(/exports combine but it is not a function/);
    expect((await failure(join(dir, "absent.mjs")))[0]).toBe("BAD_JOB");
  });

  it("passes options to setup, and grep needs a pattern", async () => {
    expect(await failure("grep")).toEqual([
      "BAD_JOB",
      "job grep rejected its options: grep needs a pattern option",
    ]);
    const grep = await loadJob("grep", { pattern: "^b", flags: "i" });
    expect([...grep.map("f.txt", "apple\nBanana\nberry")]).toEqual([
      ["Banana", "f.txt"],
      ["berry", "f.txt"],
    ]);
  });
});
