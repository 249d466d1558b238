import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ConsensusError, isConsensusError } from "@quorum/consensus";
import { type ConformanceHarness, conformanceCases } from "@quorum/consensus/testing";
import { afterEach, describe, expect, it } from "vitest";
import { NodeCluster } from "./test-cluster.js";

const harness: ConformanceHarness = {
  sizes: [1, 3],
  async createCluster(size) {
    const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    const c = new NodeCluster(ids);
    await c.start();
    return {
      ids,
      log: (id) => c.node(id),
      machine: (id) => c.slot(id).machine,
      stop: (id) => c.stop(id),
      restart: (id) => c.restart(id),
      waitUntil: (what, predicate, timeoutMs) => c.waitUntil(what, predicate, timeoutMs),
      close: () => c.close(),
    };
  },
};

describe("RaftNode passes the @quorum/consensus conformance kit", () => {
  for (const c of conformanceCases(harness)) {
    it(c.name, async () => {
      const cluster = await harness.createCluster(c.clusterSize);
      try {
        await c.run(cluster);
      } finally {
        await cluster.close();
      }
    });
  }
});

describe("RaftNode", () => {
  let cluster: NodeCluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("rejects a proposal on a follower with NOT_LEADER naming the leader and its address", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
    await cluster.waitUntil(
      "follower knows the leader",
      () => cluster!.node(follower).status().leaderId === leader,
    );
    const err = await cluster
      .node(follower)
      .propose(Buffer.from("x"))
      .catch((e: unknown) => e);
    expect(isConsensusError(err, "NOT_LEADER")).toBe(true);
    expect((err as ConsensusError).leader).toEqual({ id: leader, address: `memory:${leader}` });
  });

  it("drops and counts a malformed peer message without throwing", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    await cluster.waitForLeader();
    const hostile = cluster.network.join("evil");
    hostile.addPeer({ id: "n1", address: "memory:n1" });
    hostile.send("n1", "raft", new Uint8Array([0xff, 0x01, 0x02, 0x03]));
    await cluster.waitUntil("the drop is counted", () => {
      const m = cluster!.slot("n1").registry.getSingleMetric("raft_dropped_messages_total") as unknown as {
        hashMap: Record<string, { value: number }>;
      };
      return Object.values(m.hashMap).some((v) => v.value > 0);
    });
    await hostile.close();
    const leader = await cluster.waitForLeader();
    await cluster.node(leader).propose(Buffer.from("still fine"));
  });

  it("resolves proposals with the state machine's result, in order, batching concurrent ones", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => cluster!.node(leader).propose(Buffer.from(`c${i}`))),
    );
    expect(results.map((r) => r.result.count)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const indexes = results.map((r) => r.index);
    expect([...indexes].sort((a, b) => a - b)).toEqual(indexes);
  });

  it("times out a proposal that cannot commit (no quorum) with TIMEOUT", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    for (const id of ["n1", "n2", "n3"]) if (id !== leader) await cluster.stop(id);
    const err = await cluster
      .node(leader)
      .propose(Buffer.from("x"), { timeoutMs: 50 })
      .catch((e: unknown) => e);
    expect(isConsensusError(err)).toBe(true);
    expect(["TIMEOUT", "NOT_LEADER"]).toContain((err as ConsensusError).code);
  });

  it("adds a learner, streams it a snapshot, promotes it; it then counts toward the quorum", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"], {
      snapshotThreshold: 20,
      snapshotCatchUpEntries: 0,
      snapshotChunkBytes: 64,
    });
    await cluster.start();
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 40; i++) await cluster.node(leader).propose(Buffer.from(`p${i}`));
    await cluster.waitUntil(
      "leader compacted",
      () => (cluster!.node(leader).coreStatus()?.firstIndex ?? 0) > 2,
    );
    await cluster.startNode("n4", []);
    await cluster
      .node(leader)
      .changeMembership({ type: "addLearner", member: { id: "n4", address: "memory:n4" } });
    await cluster.waitUntil("learner caught up", () => cluster!.slot("n4").machine.commands.length === 40);
    expect(cluster.slot("n4").machine.commands).toEqual(cluster.slot(leader).machine.commands);
    expect(cluster.node("n4").status().role).toBe("learner");
    const sent = await cluster.slot(leader).registry.getSingleMetric("raft_snapshots_sent_total")!.get();
    expect(sent.values.find((v) => v.labels.outcome === "ok")?.value).toBeGreaterThanOrEqual(1);
    const installed = await cluster
      .slot("n4")
      .registry.getSingleMetric("raft_snapshots_installed_total")!
      .get();
    expect(installed.values[0]?.value).toBeGreaterThanOrEqual(1);
    const members = await cluster.node(leader).changeMembership({ type: "promote", id: "n4" });
    expect(members.find((m) => m.id === "n4")?.learner).toBe(false);
    await cluster.node(leader).propose(Buffer.from("after"));
    await cluster.waitUntil("n4 applied", () => cluster!.slot("n4").machine.commands.at(-1) === "after");
  });

  it("streams a received snapshot into a file in snapshotDir, removed once installed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quorum-raft-snapdir-"));
    try {
      cluster = new NodeCluster(["n1", "n2", "n3"], {
        snapshotThreshold: 20,
        snapshotCatchUpEntries: 0,
        snapshotChunkBytes: 64,
        snapshotDir: dir,
      });
      await cluster.start();
      const leader = await cluster.waitForLeader();
      for (let i = 0; i < 40; i++) await cluster.node(leader).propose(Buffer.from(`p${i}`));
      await cluster.waitUntil("compacted", () => (cluster!.node(leader).coreStatus()?.firstIndex ?? 0) > 2);
      await cluster.startNode("n4", []);
      const images = new Set<string>();
      const watch = setInterval(() => {
        for (const f of readdirSync(dir)) images.add(f);
      }, 1);
      await cluster
        .node(leader)
        .changeMembership({ type: "addLearner", member: { id: "n4", address: "memory:n4" } });
      await cluster.waitUntil("learner caught up", () => cluster!.slot("n4").machine.commands.length === 40);
      clearInterval(watch);
      expect(cluster.slot("n4").machine.commands).toEqual(cluster.slot(leader).machine.commands);
      expect([...images].some((f) => f.startsWith("incoming-n4-"))).toBe(true);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a snapshot transfer larger than maxSnapshotBytes", async () => {
    let refused = 0;
    const ignore = () => {};
    cluster = new NodeCluster(["n1", "n2", "n3"], {
      snapshotThreshold: 20,
      snapshotCatchUpEntries: 0,
      maxSnapshotBytes: 8,
      logger: {
        debug: ignore,
        info: ignore,
        error: ignore,
        warn: (_obj, msg) => {
          if (msg === "refused a snapshot too large") refused++;
        },
      },
    });
    await cluster.start();
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 40; i++) await cluster.node(leader).propose(Buffer.from(`p${i}`));
    await cluster.waitUntil("compacted", () => (cluster!.node(leader).coreStatus()?.firstIndex ?? 0) > 2);
    await cluster.startNode("n4", []);
    await cluster
      .node(leader)
      .changeMembership({ type: "addLearner", member: { id: "n4", address: "memory:n4" } });
    await cluster.waitUntil("a transfer was refused", () => refused > 0);
    expect(cluster.slot("n4").machine.commands).toEqual([]);
  });

  it("transfers leadership to a chosen follower", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    const target = ["n1", "n2", "n3"].find((id) => id !== leader)!;
    await cluster.node(leader).propose(Buffer.from("x"));
    await cluster.node(leader).transferLeadership(target);
    await cluster.waitUntil("target leads", () => cluster!.node(target).status().role === "leader");
    await cluster.node(target).propose(Buffer.from("y"));
  });

  it("exposes term, role, commit and applied index as Prometheus metrics", async () => {
    cluster = new NodeCluster(["n1"]);
    await cluster.start();
    await cluster.waitForLeader();
    await cluster.node("n1").propose(Buffer.from("x"));
    const text = await cluster.slot("n1").registry.metrics();
    expect(text).toMatch(/raft_term\{node="n1"\} 1/);
    expect(text).toMatch(/raft_role\{node="n1"\} 3/);
    expect(text).toMatch(/raft_applied_index\{node="n1"\} 2/);
    expect(text).toMatch(/raft_proposals_total\{node="n1",outcome="committed"\} 1/);
  });

  it("rejects pending proposals with SHUTTING_DOWN on close, and later calls too", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    for (const id of ["n1", "n2", "n3"]) if (id !== leader) await cluster.stop(id);
    const pending = cluster.node(leader).propose(Buffer.from("x"));
    await cluster.stop(leader);
    await expect(pending).rejects.toMatchObject({ code: "SHUTTING_DOWN" });
    await expect(cluster.node(leader).propose(Buffer.from("y"))).rejects.toMatchObject({
      code: "SHUTTING_DOWN",
    });
  });

  it("maps refused membership changes to INVALID_ARGUMENT and MEMBERSHIP_CHANGE_IN_PROGRESS", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    const node = cluster.node(leader);
    await expect(node.changeMembership({ type: "remove", id: "nope" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    const first = node.changeMembership({ type: "addLearner", member: { id: "n9", address: "memory:n9" } });
    await expect(
      node.changeMembership({ type: "addLearner", member: { id: "n8", address: "memory:n8" } }),
    ).rejects.toMatchObject({ code: "MEMBERSHIP_CHANGE_IN_PROGRESS" });
    const members = await first;
    expect(members.find((m) => m.id === "n9")).toMatchObject({ learner: true, address: "memory:n9" });
  });

  it("an aborted proposal rejects at once with TIMEOUT (its outcome is unknown)", async () => {
    cluster = new NodeCluster(["n1", "n2", "n3"]);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    for (const id of ["n1", "n2", "n3"]) if (id !== leader) await cluster.stop(id);
    const controller = new AbortController();
    const pending = cluster
      .node(leader)
      .propose(Buffer.from("x"), { signal: controller.signal, timeoutMs: 60_000 });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: "TIMEOUT" });
  });

  it("stops the node when the state machine throws, rejecting what is pending with SHUTTING_DOWN", async () => {
    cluster = new NodeCluster(["n1"]);
    await cluster.start();
    await cluster.waitForLeader();
    const machine = cluster.slot("n1").machine;
    const apply = machine.apply.bind(machine);
    machine.apply = (entries) => {
      if (entries.some((e) => Buffer.from(e.command).toString() === "boom")) throw new Error("disk full");
      return apply(entries);
    };
    await expect(cluster.node("n1").propose(Buffer.from("boom"))).rejects.toMatchObject({
      code: "SHUTTING_DOWN",
    });
    expect(cluster.node("n1").status().role).toBe("stopped");
    await expect(cluster.node("n1").propose(Buffer.from("after"))).rejects.toMatchObject({
      code: "SHUTTING_DOWN",
    });
  });
});
