// The replicated key-value store, used through the `etcd3` npm client.
//
// What it shows: three replicas of the store, each a SQLite MVCC state machine driven by
// Raft, each serving etcd's v3 gRPC API on 127.0.0.1. An unmodified etcd client talks to
// them: put, get, a prefix range, a compare-and-swap transaction, and a watch.
//
// Run it (after `pnpm build` at the root):  node examples/dist/etcd-client.js

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ApplyResult, type KvServer, KvStore, startKvService } from "@quorum/kv";
import { RaftNode, SqliteLogStore } from "@quorum/raft";
import { MemoryNetwork, seededRandom, systemClock } from "@quorum/transport";
import { Etcd3, type IKeyValue } from "etcd3";
import { check, exitIfStuck, section, waitFor } from "./util.js";

exitIfStuck(30_000);

const ids = ["n1", "n2", "n3"];
const peers = ids.map((id) => ({ id, address: `memory:${id}` }));
const dataDir = mkdtempSync(join(tmpdir(), "quorum-example-kv-"));
const network = new MemoryNetwork();
const cleanups: (() => Promise<void> | void)[] = [];
/** Each replica's etcd endpoint, by node id: a follower forwards writes to the leader's. */
const clientAddress = new Map<string, string>();

// ---------------------------------------------------------------------------------------
// One replica: a KvStore (the state machine: keys, values and revisions in SQLite), a Raft
// node that orders the writes, and the etcd API in front of them. The store runs on any
// ReplicatedLog, so PaxosNode would do in place of RaftNode.
// ---------------------------------------------------------------------------------------
async function startReplica(
  id: string,
  seed: number,
): Promise<{ node: RaftNode<ApplyResult>; server: KvServer }> {
  const transport = network.join(id);
  const store = KvStore.open({ path: join(dataDir, `${id}-kv.db`) });
  const storage = new SqliteLogStore({ path: join(dataDir, `${id}-raft.db`) });
  const node = new RaftNode<ApplyResult>({
    id,
    peers,
    transport,
    clock: systemClock,
    storage,
    stateMachine: store,
    random: seededRandom(seed),
    tickMs: 10,
    electionTicks: 10,
  });
  await node.start();
  const server = await startKvService({
    log: node,
    store,
    listen: "127.0.0.1:0", // a free port
    leaderClientAddress: (memberId) => clientAddress.get(memberId),
  });
  clientAddress.set(id, server.address);
  // Stop in the reverse order of start: clients first, then consensus, then the files.
  cleanups.push(async () => {
    await server.close(100);
    await node.close();
    await transport.close();
    storage.close();
    store.close();
  });
  return { node, server };
}

async function main(): Promise<void> {
  section("Starting three replicas");
  const replicas: Awaited<ReturnType<typeof startReplica>>[] = [];
  for (const [i, id] of ids.entries()) replicas.push(await startReplica(id, i + 1));
  await waitFor("a leader", () => replicas.find((r) => r.node.status().role === "leader"));
  for (const [i, r] of replicas.entries()) {
    console.log(`  ${ids[i]} serves etcd's API on ${r.server.address} (${r.node.status().role})`);
  }

  // The client is etcd's own: it knows nothing of Quorum. Given every endpoint, it spreads
  // requests over them; a follower forwards what it cannot serve to the leader.
  const client = new Etcd3({ hosts: replicas.map((r) => `http://${r.server.address}`) });
  cleanups.push(() => client.close()); // cleanups run last-in first-out

  section("put and get");
  await client.put("config/color").value("blue");
  await client.put("config/size").value("10");
  const color = await client.get("config/color").string();
  console.log(`  config/color = ${color}`);
  check(color === "blue", "a value written through the client reads back");
  const all = await client.getAll().prefix("config/").strings();
  console.log(`  prefix config/: ${JSON.stringify(all)}`);
  check(all["config/size"] === "10" && Object.keys(all).length === 2, "a prefix range returns both keys");

  section("A watch sees every change under a prefix, in revision order");
  const seen: string[] = [];
  const watcher = await client.watch().prefix("config/").create();
  watcher.on("put", (kv: IKeyValue) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
  watcher.on("delete", (kv: IKeyValue) => seen.push(`delete ${kv.key.toString()}`));
  console.log("  watching config/ (the events are printed below, once they arrive)");

  section("A transaction: compare-and-swap");
  // etcd's Txn: if every compare holds, run `then`, else `else`; atomically, at one revision.
  const swapped = await client
    .if("config/color", "Value", "==", "blue")
    .then(client.put("config/color").value("green"))
    .else(client.get("config/color"))
    .commit();
  console.log(`  if color == blue then color := green -> succeeded: ${swapped.succeeded}`);
  check(swapped.succeeded, "the first compare-and-swap succeeds");
  const again = await client
    .if("config/color", "Value", "==", "blue")
    .then(client.put("config/color").value("red"))
    .commit();
  console.log(`  if color == blue then color := red   -> succeeded: ${again.succeeded}`);
  check(!again.succeeded, "the second compare-and-swap fails: the value is no longer blue");
  check((await client.get("config/color").string()) === "green", "the value is green");

  await client.delete().key("config/size");
  await waitFor("the watch events", () => (seen.length >= 2 ? true : undefined));
  console.log(`  watch: ${seen.join(", ")}`);
  check(seen.join() === "put config/color=green,delete config/size", "the watch saw the swap and the delete");
  await watcher.cancel();

  section("Every replica holds the same data");
  // A client talking to one replica only. etcd's reads are linearizable by default: a
  // follower first asks the leader for its commit index (ReadIndex), waits until it has
  // applied that far, then answers from its own SQLite store.
  for (const [i, r] of replicas.entries()) {
    const one = new Etcd3({ hosts: `http://${r.server.address}` });
    const value = await one.get("config/color").string();
    one.close();
    console.log(`  ${ids[i]}: config/color = ${value}`);
    check(value === "green", `${ids[i]} serves the latest value`);
  }
  console.log("\nOK: an unmodified etcd client used the replicated store");
}

try {
  await main();
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
  rmSync(dataDir, { recursive: true, force: true });
}
