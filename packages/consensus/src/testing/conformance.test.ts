import { describe, expect, it } from "vitest";
import { ConsensusError } from "../errors.js";
import type { ConformanceCluster, ConformanceHarness } from "./conformance.js";
import { conformanceCases } from "./conformance.js";
import { RecordingStateMachine } from "./recording-machine.js";
import { SingleNodeLog } from "./single-node-log.js";

/** The kit run against its own double: shows the single-node cases pass on a correct log. */
function singleNodeHarness(): ConformanceHarness {
  return {
    sizes: [1],
    async createCluster() {
      const machine = new RecordingStateMachine();
      let log = new SingleNodeLog("n1", machine);
      await log.start();
      const cluster: ConformanceCluster = {
        ids: ["n1"],
        log: () => log,
        machine: () => machine,
        stop: () => log.close(),
        async restart() {
          log = new SingleNodeLog("n1", machine);
          await log.start();
        },
        async waitUntil(what, predicate, timeoutMs = 1000) {
          const deadline = Date.now() + timeoutMs;
          while (!predicate()) {
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
            await new Promise((r) => setTimeout(r, 5));
          }
        },
        close: () => log.close(),
      };
      return cluster;
    },
  };
}

describe("conformance kit on SingleNodeLog", () => {
  const harness = singleNodeHarness();
  const cases = conformanceCases(harness);

  it("offers only the cases that fit the harness's cluster sizes", () => {
    expect(cases.map((c) => c.clusterSize)).toEqual(cases.map(() => 1));
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const c of cases) {
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

describe("conformance kit catches a broken log", () => {
  it("fails when results come back out of order", async () => {
    const harness = singleNodeHarness();
    const [single] = conformanceCases(harness).filter((c) => c.name.startsWith("a single-node"));
    const cluster = await harness.createCluster(1);
    const real = cluster.log("n1");
    // A log that answers each proposal with the previous proposal's result.
    let previous: Awaited<ReturnType<typeof real.propose>> | undefined;
    const broken = Object.create(real) as typeof real;
    broken.propose = async (command) => {
      const result = await real.propose(command);
      const answer = previous ?? result;
      previous = result;
      return answer;
    };
    await expect(single!.run({ ...cluster, log: () => broken })).rejects.toThrow(/results in proposal order/);
  });
});

describe("RecordingStateMachine", () => {
  it("refuses to apply an entry twice", () => {
    const m = new RecordingStateMachine();
    m.apply([{ index: 1, command: Buffer.from("a") }]);
    expect(() => m.apply([{ index: 1, command: Buffer.from("a") }])).toThrow(/applied twice/);
  });

  it("restores exactly what it snapshotted, across chunk boundaries", async () => {
    const m = new RecordingStateMachine();
    m.apply(Array.from({ length: 40 }, (_, i) => ({ index: i + 3, command: Buffer.from(`cmd-${i}`) })));
    const snap = await m.snapshot();
    let chunks = 0;
    for await (const _ of snap.chunks()) chunks++;
    expect(chunks).toBeGreaterThan(1);
    const copy = new RecordingStateMachine();
    await copy.restore(snap);
    expect(copy.appliedIndex()).toBe(42);
    expect(copy.commands).toEqual(m.commands);
  });
});

describe("SingleNodeLog", () => {
  it("rejects proposals after close with SHUTTING_DOWN", async () => {
    const log = new SingleNodeLog("n1", new RecordingStateMachine());
    await log.start();
    await log.close();
    await expect(log.propose(Buffer.from("x"))).rejects.toBeInstanceOf(ConsensusError);
  });
});
