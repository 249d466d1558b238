import { type SingleNodeKv, startSingleNodeKv } from "@quorum/kv/testing";
import { Etcd3, GRPCInvalidArgumentError, GRPCOutOfRangeError } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The etcd3 npm client (microsoft/etcd3, grpc-js) against one store on SingleNodeLog.
describe("etcd3 npm client against a single-node store", () => {
  let kv: SingleNodeKv;
  let client: Etcd3;

  beforeAll(async () => {
    kv = await startSingleNodeKv();
    client = new Etcd3({ hosts: `http://${kv.endpoint}` });
  });
  afterAll(async () => {
    client?.close();
    await kv?.stop();
  });

  it("puts and gets, with prefixes, counts and keys", async () => {
    await client.put("foo").value("bar");
    expect(await client.get("foo").string()).toBe("bar");
    expect(await client.get("missing").string()).toBeNull();
    await client.put("app/a").value("1");
    await client.put("app/b").value("2");
    await client.put("app/c").value("3");
    expect(await client.getAll().prefix("app/").strings()).toEqual({
      "app/a": "1",
      "app/b": "2",
      "app/c": "3",
    });
    expect(await client.getAll().prefix("app/").count()).toBe(3);
    expect(await client.getAll().prefix("app/").keys()).toEqual(["app/a", "app/b", "app/c"]);
    expect(await client.getAll().prefix("app/").sort("Key", "Descend").limit(1).keys()).toEqual(["app/c"]);
    const exists = await client.get("app/a").exists();
    expect(exists).toBe(true);
  });

  it("deletes with previous values and reads old revisions", async () => {
    const put = await client.put("h").value("old").exec();
    const rev = put.header.revision;
    await client.put("h").value("new");
    expect(await client.get("h").revision(rev).string()).toBe("old");
    const del = await client.delete().key("h").getPrevious();
    expect(del.map((kv) => kv.value.toString())).toEqual(["new"]);
    expect(await client.get("h").string()).toBeNull();
  });

  it("runs if/then/else transactions on both branches", async () => {
    await client.put("lock").value("free");
    const won = await client
      .if("lock", "Value", "==", "free")
      .then(client.put("lock").value("mine"), client.get("lock"))
      .else(client.get("lock"))
      .commit();
    expect(won.succeeded).toBe(true);
    expect(won.responses[1]!.response_range.kvs[0]!.value.toString()).toBe("mine");
    const lost = await client
      .if("lock", "Value", "==", "free")
      .then(client.put("lock").value("again"))
      .else(client.get("lock"))
      .commit();
    expect(lost.succeeded).toBe(false);
    expect(lost.responses[0]!.response_range.kvs[0]!.value.toString()).toBe("mine");
    const created = await client.if("fresh", "Create", "==", 0).then(client.put("fresh").value("x")).commit();
    expect(created.succeeded).toBe(true);
  });

  it("maps errors to etcd3's typed errors", async () => {
    await expect(client.get("").string()).rejects.toBeInstanceOf(GRPCInvalidArgumentError);
    const rev = Number((await client.put("z").value("1").exec()).header.revision);
    await client.put("z").value("2");
    await client.kv.compact({ revision: String(rev + 1) });
    await expect(client.get("z").revision(rev).string()).rejects.toThrow(
      "etcdserver: mvcc: required revision has been compacted",
    );
    await expect(
      client
        .get("z")
        .revision(rev + 1000)
        .string(),
    ).rejects.toBeInstanceOf(GRPCOutOfRangeError);
  });

  it("reads maintenance status and the member list", async () => {
    const status = await client.maintenance.status();
    expect(status.version).toBe("3.5.0");
    expect(status.leader).toBe(status.header.member_id);
    const members = await client.cluster.memberList({});
    expect(members.members).toHaveLength(1);
    expect(members.members[0]!.clientURLs).toEqual([`http://${kv.endpoint}`]);
  });
});
