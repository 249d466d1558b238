import { ManualClock, type SingleNodeKv, startSingleNodeKv } from "@quorum/kv/testing";
import { Etcd3, type IKeyValue } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

async function eventually(predicate: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The etcd3 npm client's watches, leases, locks and elections, as an application uses them.
describe("etcd3 npm client: watch, lease, lock, election", () => {
  let kv: SingleNodeKv;
  let client: Etcd3;
  const clock = new ManualClock();

  beforeAll(async () => {
    kv = await startSingleNodeKv({ clock });
    client = new Etcd3({ hosts: `http://${kv.endpoint}` });
  });
  afterAll(async () => {
    client?.close();
    await kv?.stop();
  });

  it("watches a prefix: puts and deletes in order, with prev kv", async () => {
    const watcher = await client.watch().prefix("w/").withPreviousKV().create();
    const seen: string[] = [];
    watcher.on("put", (kv: IKeyValue, prev?: IKeyValue) =>
      seen.push(`put ${kv.key} ${kv.value}${prev ? ` (was ${prev.value})` : ""}`),
    );
    watcher.on("delete", (kv: IKeyValue) => seen.push(`delete ${kv.key}`));
    await client.put("w/a").value("1");
    await client.put("x").value("not watched");
    await client.put("w/a").value("2");
    await client.delete().key("w/a");
    await client.put("w/b").value("3");
    await eventually(() => seen.length === 4);
    expect(seen).toEqual(["put w/a 1", "put w/a 2 (was 1)", "delete w/a", "put w/b 3"]);
    await watcher.cancel();
  });

  it("resumes a watch from a revision and sees the history", async () => {
    const rev = Number((await client.put("h/k").value("1").exec()).header.revision);
    await client.put("h/k").value("2");
    const watcher = await client.watch().key("h/k").startRevision(String(rev)).create();
    const values: string[] = [];
    watcher.on("put", (kv: IKeyValue) => values.push(kv.value.toString()));
    await eventually(() => values.length === 2);
    await client.put("h/k").value("3");
    await eventually(() => values.length === 3);
    expect(values).toEqual(["1", "2", "3"]);
    await watcher.cancel();
  });

  it("grants a lease, keeps it alive, and loses its keys when it is revoked", async () => {
    const lease = client.lease(10, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put("lease/k").value("v");
    expect(await client.get("lease/k").string()).toBe("v");
    const ttl = await lease.keepaliveOnce();
    expect(ttl.TTL).toBe("10");
    await lease.revoke();
    expect(await client.get("lease/k").string()).toBeNull();
    expect(id).toMatch(/^\d+$/);
  });

  it("serializes critical sections with its lock helper", async () => {
    const order: string[] = [];
    // The holder leaves when the test says so, not after a delay that load could outlast.
    let leave = () => {};
    const worker = (name: string) =>
      client.lock("locks/one").do(async () => {
        order.push(`${name} in`);
        await new Promise<void>((r) => (leave = r));
        order.push(`${name} out`);
      });
    const first = worker("a");
    await eventually(async () => order.length > 0);
    // A second holder fails to acquire while the first holds the lock (etcd3 does not wait).
    await expect(client.lock("locks/one").acquire()).rejects.toThrow(/Failed to acquire a lock/);
    leave();
    await first;
    const second = worker("b");
    await eventually(async () => order.length === 3);
    leave();
    await second;
    expect(order).toEqual(["a in", "a out", "b in", "b out"]);
    expect(await client.getAll().prefix("locks/").keys()).toEqual([]);
  });

  it("elects one leader at a time, and hands over on resign", async () => {
    const election = client.election("elect");
    const observer = await election.observe();
    const changes: string[] = [];
    observer.on("change", (leader) => changes.push(leader ?? ""));
    const a = election.campaign("a");
    await new Promise<void>((resolve, reject) => {
      a.on("elected", () => resolve());
      a.on("error", reject);
    });
    const b = election.campaign("b");
    let bElected = false;
    b.on("elected", () => (bElected = true));
    await new Promise((r) => setTimeout(r, 150));
    expect(bElected).toBe(false);
    expect(await election.leader()).toBe("a");
    await a.resign();
    await eventually(() => bElected);
    expect(await election.leader()).toBe("b");
    await eventually(() => changes.includes("b"));
    await b.resign();
    await observer.cancel();
  });

  it("loses a lease that is not kept alive once the leader's clock passes its TTL", async () => {
    const lease = client.lease(3, { autoKeepAlive: false });
    await lease.grant();
    await lease.put("lost/k").value("v");
    const lost = new Promise<void>((resolve) => lease.on("lost", () => resolve()));
    clock.advance(3_500);
    await eventually(async () => (await client.get("lost/k").string()) === null);
    // The client learns it on its next keep-alive (TTL 0).
    await expect(lease.keepaliveOnce()).rejects.toThrow();
    await lost;
  });
});
