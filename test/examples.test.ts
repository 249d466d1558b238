import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Every worked example runs as its own process, as a reader would run it, from the built
// examples (`pnpm build` compiles them; `pnpm test` builds first). Each example checks its
// own behaviour and exits non-zero when it does not happen; here we also look for the key
// lines of what it prints, so an example that silently stops demonstrating something fails.
const root = fileURLToPath(new URL("..", import.meta.url));

function run(name: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `${root}examples/dist/${name}.js`;
  if (!existsSync(script)) throw new Error(`${script} is missing: run \`pnpm build\` first`);
  return new Promise((resolve) => {
    execFile(process.execPath, [script], { cwd: root, timeout: 40_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const cases: { name: string; lines: RegExp[] }[] = [
  {
    name: "raft-cluster",
    lines: [
      /leader: n\d in term \d+/,
      /committed "set z=3" at log index \d+/,
      /refused a proposal: .*not the leader/,
      /new leader: n\d in term \d+/,
      /✓ the new leader has every committed command/,
      /✓ n1 applied every committed command in order/,
      /OK: a new leader was elected and every committed command survived/,
    ],
  },
  {
    name: "paxos-log",
    lines: [
      /won phase 1 and leads with ballot \(\d+, [abc]\)/,
      /chosen a batch of 3 at log indexes 3, 4, 5/,
      /✓ the new leader's ballot round \(\d+\) is above the old one's/,
      /OK: the log survived the leader's stop and kept growing/,
    ],
  },
  {
    name: "two-phase-commit",
    lines: [
      /outcome: committed/,
      /commit record for transfer-2 is durable \.\.\. and the coordinator crashes/,
      /the client hears: OUTCOME_UNKNOWN/,
      /bank-a: transfer-2 is prepared, 1 key locked/,
      /bank-b: transfer-2 is prepared, 1 key locked/,
      /decision log: transfer-2=commit/,
      /alice=50 bob=100 total=150/,
      /OK: the decision outlived the coordinator/,
    ],
  },
  {
    name: "etcd-client",
    lines: [
      /config\/color = blue/,
      /succeeded: true/,
      /succeeded: false/,
      /watch: put config\/color=green, delete config\/size/,
      /n3: config\/color = green/,
      /OK: an unmodified etcd client used the replicated store/,
    ],
  },
  {
    name: "mapreduce-job",
    lines: [
      /3 map tasks and 2 reduce tasks/,
      /mr-out-0: 02 4/,
      /✓ the distributed run produced exactly the sequential result/,
      /OK: a custom job ran on two workers/,
    ],
  },
];

describe("worked examples (examples/)", () => {
  it.concurrent.each(cases)(
    "$name runs, exits 0 and prints what it demonstrates",
    async ({ name, lines }) => {
      const { code, stdout, stderr } = await run(name);
      expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
      expect(stdout).not.toMatch(/check failed/);
      for (const line of lines) expect(stdout).toMatch(line);
    },
    60_000,
  );

  it("every example in examples/src is listed here and in examples/README.md", async () => {
    const { readdirSync, readFileSync } = await import("node:fs");
    const sources = readdirSync(`${root}examples/src`)
      .filter((f) => f.endsWith(".ts") && !["util.ts", "command-list.ts"].includes(f))
      .map((f) => f.replace(/\.ts$/, ""))
      .sort();
    expect(sources).toEqual(cases.map((c) => c.name).sort());
    const readme = readFileSync(`${root}examples/README.md`, "utf8");
    for (const name of sources) expect(readme).toContain(`node examples/dist/${name}.js`);
  });
});
