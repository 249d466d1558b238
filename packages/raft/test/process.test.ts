// Real processes: three RaftNode processes (bench/raft-process.mjs, from the built dist) over
// GrpcTransport on 127.0.0.1 with SQLite files. SIGKILL the leader: a new leader commits.
// SIGKILL all, restart all: every acknowledged command is still there, on every node, at the
// index its proposer was told, and the nodes' state machines and logs agree.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { distBuilt, ProcessCluster } from "../bench/process-cluster.mjs";

const root = fileURLToPath(new URL("../../../", import.meta.url));
let cluster: ProcessCluster | undefined;

beforeAll(() => {
  // The processes run the built package: (re)build it and its dependencies (a cache hit when
  // nothing changed), so a stale dist is not what gets tested.
  const turbo = `${root}node_modules/.bin/turbo`;
  if (existsSync(turbo)) {
    try {
      execFileSync(turbo, ["run", "build", "--filter=@quorum/raft", "--output-logs=errors-only"], {
        cwd: root,
        stdio: "pipe",
        env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" },
        timeout: 180_000,
      });
    } catch (err) {
      throw new Error(`building @quorum/raft failed: ${String((err as { stdout?: Buffer }).stdout ?? err)}`);
    }
  }
  if (!distBuilt())
    throw new Error("packages/raft/dist is missing: run `pnpm exec turbo run build --filter=@quorum/raft`");
}, 200_000);

afterAll(async () => {
  await cluster?.destroy();
});

type Acked = [number, string][];

describe("RaftNode processes over gRPC with SQLite files", () => {
  it("elects a new leader after SIGKILL of the leader, and keeps every acknowledged command across SIGKILL of all", async () => {
    const c = new ProcessCluster({ size: 3, mode: "record", stdio: "inherit" });
    cluster = c;
    await c.start();
    const acked: Acked = [];
    const propose = async (id: string, prefix: string, count: number) => {
      const r = await c.call(id, "propose", { count, concurrency: 8, prefix, timeoutMs: 5_000 });
      expect(r.failed, JSON.stringify(r.errors)).toBe(0);
      expect(r.committed).toBe(count);
      acked.push(...(r.indexes ?? []));
    };

    // 1. A leader commits.
    const first = await c.waitForLeader();
    await propose(first, "a", 100);
    const before = (await c.call(first, "status")).term;

    // 2. SIGKILL the leader: a new leader is elected among the survivors and commits.
    await c.kill(first);
    const second = await c.waitForLeader(10_000, first);
    expect(second).not.toBe(first);
    await propose(second, "b", 100);
    expect((await c.call(second, "status")).term).toBeGreaterThan(before);

    // The killed node comes back from its files and catches up.
    await c.spawn(first);
    await propose(second, "c", 50);
    const last = Math.max(...acked.map(([index]) => index));
    await c.waitApplied(last);

    // 3. More commands, then SIGKILL all at once right after the acknowledgements arrive
    // (followers may not have applied them yet).
    await propose(second, "d", 200);
    await Promise.all(c.ids.map((id) => c.kill(id)));

    // 4. Restart all from their files: a leader is elected and commits again.
    await Promise.all(c.ids.map((id) => c.spawn(id)));
    const third = await c.waitForLeader();
    await propose(third, "e", 10);
    const final = await c.waitApplied(Math.max(...acked.map(([index]) => index)));

    // Every node applied the same commands, at the same indexes, and holds every
    // acknowledged command where its proposer was told it landed.
    const applied = await Promise.all(c.ids.map((id) => c.call(id, "applied")));
    const reference = applied[0]!.commands;
    for (const a of applied) expect(a.commands).toEqual(reference);
    const byIndex = new Map(reference);
    for (const [index, command] of acked) expect(byIndex.get(index), `index ${index}`).toBe(command);
    expect(new Set(reference.map(([, cmd]) => cmd)).size).toBe(reference.length); // applied once each
    expect(reference.length).toBe(acked.length);

    // State machine (count + rolling digest) and log agree across nodes.
    const statuses = c.ids.map((id) => final[id]!);
    for (const s of statuses) {
      expect(s.count).toBe(acked.length);
      expect(s.digest).toBe(statuses[0]!.digest);
    }
    const status = await Promise.all(c.ids.map((id) => c.call(id, "status")));
    const commit = Math.max(...status.map((s) => s.commit));
    await c.waitApplied(commit);
    const settled = await Promise.all(c.ids.map((id) => c.call(id, "status")));
    for (const s of settled) {
      expect(s.term).toBe(settled[0]!.term);
      expect(s.lastIndex).toBe(settled[0]!.lastIndex);
    }
  }, 30_000);
});
