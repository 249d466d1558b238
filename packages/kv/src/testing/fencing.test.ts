import { SingleNodeLog } from "@quorum/consensus/testing";
import { afterEach, describe, expect, it } from "vitest";
import { encodeCommand } from "../command.js";
import { PutRequest } from "../gen/etcdserverpb/rpc.js";
import { type ApplyResult, KvStore } from "../store/kv-store.js";
import { fencedMachine, fencedService, fencedStore } from "./fencing.js";

const put = (key: string) =>
  encodeCommand.put(PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from("v") }));

/** Settles `p` against a macrotask: a promise that never settles is still "pending" after it. */
const state = (p: Promise<unknown>) =>
  Promise.race([p.then(() => "settled"), new Promise((resolve) => setImmediate(() => resolve("pending")))]);

describe("fencedStore", () => {
  const durable = () => {
    const calls: string[] = [];
    return {
      calls,
      load: () => calls.push("load"),
      save: (n: number) => calls.push(`save ${n}`),
      close: () => calls.push("close"),
    };
  };

  it("passes reads and writes through while the incarnation lives, and never closes the store", () => {
    const store = durable();
    const fenced = fencedStore(store, () => false, "acceptor", { reads: ["load"], writes: ["save"] });
    fenced.load();
    fenced.save(1);
    fenced.close();
    expect(store.calls).toEqual(["load", "save 1"]);
  });

  it("refuses the writes of a crashed incarnation, still serving its reads", () => {
    const store = durable();
    let dead = false;
    const fenced = fencedStore(store, () => dead, "acceptor", { reads: ["load"], writes: ["save"] });
    dead = true;
    expect(() => fenced.save(2)).toThrow("acceptor write from a crashed incarnation");
    fenced.load();
    expect(store.calls).toEqual(["load"]);
  });

  it("exposes only the methods it names", () => {
    const fenced = fencedStore(durable(), () => false, "acceptor", { reads: [], writes: ["save"] });
    expect(Object.keys(fenced).sort()).toEqual(["close", "save"]);
  });
});

describe("fencedMachine and fencedService", () => {
  let store: KvStore | undefined;
  afterEach(() => store?.close());

  it("apply through the log while alive; once crashed, requests never settle and nothing is applied", async () => {
    store = KvStore.open({ path: ":memory:" });
    let dead = false;
    const log = new SingleNodeLog<ApplyResult>(
      "n1",
      fencedMachine(store, () => dead),
    );
    await log.start();
    const service = fencedService(log, () => dead);
    await service.propose(put("a"));
    await service.proposeBatch!([put("b"), put("c")]);
    expect(store.appliedIndex()).toBe(3);

    dead = true;
    expect(await state(service.propose(put("d")))).toBe("pending");
    expect(await state(service.proposeBatch!([put("e")]))).toBe("pending");
    expect(await state(service.read())).toBe("pending");
    expect(store.appliedIndex()).toBe(3);
    // A write that reaches the machine anyway (the consensus node's own leftover work) throws.
    await expect(log.propose(put("f"))).rejects.toThrow("state machine write from a crashed incarnation");
    expect(store.appliedIndex()).toBe(3);
    // What does not change the state stays served: status, as a dead node's last view.
    expect(service.status().appliedIndex).toBe(3);
  });

  it("keeps a log's optional methods absent where the log lacks them", async () => {
    store = KvStore.open({ path: ":memory:" });
    const log = new SingleNodeLog<ApplyResult>("n1", store);
    const service = fencedService(log, () => false);
    expect(service.proposeBatch).toBeTypeOf("function");
    expect(service.transferLeadership).toBeUndefined();
  });
});
