import { isConsensusError } from "@quorum/consensus";
import { type ConformanceHarness, conformanceCases, waitForLeader } from "@quorum/consensus/testing";
import { describe, expect, it } from "vitest";
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
      machine: (id) => c.machine(id),
      stop: (id) => c.stop(id),
      restart: (id) => c.restart(id),
      waitUntil: (what, predicate, timeoutMs) => c.waitUntil(what, predicate, timeoutMs),
      close: () => c.close(),
    };
  },
};

describe("paxos conformance (ReplicatedLog contract, MemoryNetwork, real timers)", () => {
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

describe("PaxosNode", () => {
  it("refuses membership changes with INVALID_ARGUMENT (not supported yet)", async () => {
    const c = new NodeCluster(["n1"]);
    await c.start();
    try {
      await expect(c.node("n1").changeMembership({ type: "remove", id: "n1" })).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
        message: "membership changes are not supported by paxos yet",
      });
    } finally {
      await c.close();
    }
  });

  it("refuses a command that is not bytes with INVALID_ARGUMENT", async () => {
    const c = new NodeCluster(["n1"]);
    await c.start();
    try {
      await expect(c.node("n1").propose("x" as unknown as Uint8Array)).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
    } finally {
      await c.close();
    }
  });

  it("drops and counts a malformed peer message instead of throwing", async () => {
    const c = new NodeCluster(["n1", "n2"]);
    await c.start();
    try {
      c.slots.get("n2")!.transport.send("n1", "paxos", new Uint8Array([0xff, 0xff, 0xff]));
      await c.waitUntil(
        "the malformed message to be counted",
        () => c.node("n1").stats.droppedMalformed === 1,
      );
    } finally {
      await c.close();
    }
  });

  it("a proposal on a minority side times out or is refused, and never resolves as committed", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"]);
    await c.start();
    try {
      const leader = await waitForLeader({
        ids: c.ids,
        log: (id) => c.node(id),
        machine: (id) => c.machine(id),
        stop: (id) => c.stop(id),
        restart: (id) => c.restart(id),
        waitUntil: (w, p, t) => c.waitUntil(w, p, t),
        close: () => c.close(),
      });
      for (const id of c.ids) if (id !== leader) await c.stop(id);
      const err = await c
        .node(leader)
        .propose(new TextEncoder().encode("alone"), { timeoutMs: 300 })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(isConsensusError(err) && ["TIMEOUT", "DROPPED", "NOT_LEADER"].includes(err.code)).toBe(true);
      expect(c.machine(leader).commands).not.toContain("alone");
    } finally {
      await c.close();
    }
  });
});
