#!/usr/bin/env node
// How many Raft log entries a transfer costs, single-shard versus cross-shard (a profiling aid
// for txn-bench, which measures time): starts three `quorum node --shards 3` processes, runs N
// transfers of each kind (the same Txn as txn-bench: two mod_revision compares, two puts;
// CONC clients with conflict-free pairs, requests to the anchor shard's leader), and counts
// the entries each shard's log gained (in n1's replica, read from its raft-<shard>.db after
// the run settles). A single-shard transfer is 1 entry in its shard; a cross-shard one is a
// prepare and a decide in each of its two shards. Entries beyond that are the router's
// revision-floor "bumps" (an idle shard behind the node's highest revision gets an empty
// entry, at most every 20 ms). Then 2 s idle, which should add none.
//
//   node packages/txn/bench/txn-log-entries.mjs        (N=400, CONC=1; e.g. N=1600 CONC=16)
//
// Run it under `flock /tmp/quorum-bench.lock` like the benchmarks. Kills its processes and
// removes its temp dir at the end.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import { defaultSplitPoints, ShardMap } from "@quorum/kv";
import Database from "better-sqlite3";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  PutResponse,
  TxnRequest,
  TxnResponse,
} from "../../kv/dist/gen/etcdserverpb/rpc.js";

const N = Number(process.env.N ?? 400);
const CONC = Number(process.env.CONC ?? 1);
if (!Number.isInteger(N) || !Number.isInteger(CONC) || N < 1 || CONC < 1 || N % CONC !== 0) {
  process.stderr.write(`txn-log-entries: N and CONC must be positive integers, N a multiple of CONC\n`);
  process.exit(2);
}
const SHARDS = 3;
const cli = fileURLToPath(new URL("../../../apps/demo/dist/cli.js", import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write(`txn-log-entries: ${cli} is missing: run \`pnpm build\` first\n`);
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const identity = (b) => b;
const once = (c, path, req) =>
  new Promise((resolve, reject) =>
    c.makeUnaryRequest(path, identity, identity, req, { deadline: Date.now() + 10_000 }, (e, r) =>
      e ? reject(e) : resolve(r),
    ),
  );
/** A call, sent again while the answer is "no leader" (given before anything is proposed). */
async function call(c, path, req) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await once(c, path, req);
    } catch (err) {
      if (err.details !== "etcdserver: no leader" || attempt >= 100) throw err;
      await sleep(100);
    }
  }
}

async function freePorts(n) {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const dir = mkdtempSync(join(tmpdir(), "txn-log-entries-"));
const ports = await freePorts(9);
const nodes = [0, 1, 2].map((i) => ({
  name: `n${i + 1}`,
  client: `127.0.0.1:${ports[3 * i]}`,
  peer: `127.0.0.1:${ports[3 * i + 1]}`,
  metrics: `127.0.0.1:${ports[3 * i + 2]}`,
}));
const initial = nodes.map((n) => `${n.name}=${n.peer}`).join(",");
const procs = nodes.map((n) =>
  spawn(
    process.execPath,
    [
      ...[cli, "node", "--name", n.name, "--data-dir", join(dir, n.name), "--listen-client", n.client],
      ...["--listen-peer", n.peer, "--initial-cluster", initial, "--listen-metrics", n.metrics],
      ...["--shards", String(SHARDS), "--log-level", "warn"],
    ],
    { stdio: "ignore" },
  ),
);
const cleanup = () => {
  for (const p of procs) p.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
};
process.on("exit", cleanup);

/** Each shard's leader (node name), once every node agrees. */
async function leaders() {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const statuses = await Promise.all(
      nodes.map((n) =>
        fetch(`http://${n.metrics}/status`)
          .then((r) => r.json())
          .catch(() => undefined),
      ),
    );
    const l = Array.from({ length: SHARDS }, (_, i) => {
      const ids = new Set(statuses.map((s) => s?.shards?.[i]?.leaderId));
      const [id] = ids;
      return ids.size === 1 ? id : undefined;
    });
    if (l.every(Boolean)) return l;
    await sleep(200);
  }
  throw new Error("no leader for every shard after 30 s");
}

/** Entries in each shard's log, in n1's replica. */
function entries() {
  return Array.from({ length: SHARDS }, (_, s) => {
    const db = new Database(join(dir, "n1", `raft-${s}.db`), { readonly: true, fileMustExist: true });
    try {
      return db.prepare("SELECT count(*) AS c FROM raft_entries").get().c;
    } finally {
      db.close();
    }
  });
}

const shardMap = new ShardMap(defaultSplitPoints(SHARDS));
const prefixes = Array.from({ length: SHARDS }, (_, s) =>
  s === 0 ? "/" : defaultSplitPoints(SHARDS)[s - 1].toString("latin1"),
);

try {
  const l = await leaders();
  const channels = Object.fromEntries(
    nodes.map((n) => [n.name, new grpc.Client(n.client, grpc.credentials.createInsecure())]),
  );
  const rows = [];
  for (const [round, kind] of ["single", "cross", "single", "cross"].entries()) {
    const pairs = Array.from({ length: CONC }, (_, w) => {
      const s1 = w % SHARDS;
      const s2 = kind === "single" ? s1 : (w + 1) % SHARDS;
      const a = Buffer.from(`${prefixes[s1]}entries/${round}-${w}-a`);
      const b = Buffer.from(`${prefixes[s2]}entries/${round}-${w}-b`);
      if (shardMap.shardOf(a) !== s1 || shardMap.shardOf(b) !== s2) throw new Error("bad shard prefixes");
      return { a, b, leader: l[Math.min(s1, s2)] };
    });
    const mods = new Map();
    for (const { a, b, leader } of pairs) {
      for (const key of [a, b]) {
        const put = PutRequest.encode(PutRequest.fromPartial({ key, value: Buffer.from("0") })).finish();
        const res = PutResponse.decode(
          await call(channels[leader], "/etcdserverpb.KV/Put", Buffer.from(put)),
        );
        mods.set(key.toString(), res.header.revision);
      }
    }
    await sleep(500);
    const before = entries();
    const began = performance.now();
    await Promise.all(
      pairs.map(async ({ a, b, leader }) => {
        for (let i = 0; i < N / CONC; i++) {
          const req = TxnRequest.fromPartial({
            compare: [a, b].map((key) => ({
              key,
              target: Compare_CompareTarget.MOD,
              result: Compare_CompareResult.EQUAL,
              modRevision: mods.get(key.toString()),
            })),
            success: [a, b].map((key) => ({ requestPut: { key, value: Buffer.from(String(i)) } })),
          });
          const res = TxnResponse.decode(
            await call(
              channels[leader],
              "/etcdserverpb.KV/Txn",
              Buffer.from(TxnRequest.encode(req).finish()),
            ),
          );
          if (!res.succeeded) throw new Error(`transfer ${i} of ${a} found it changed`);
          for (const key of [a, b]) mods.set(key.toString(), res.header.revision);
        }
      }),
    );
    const ms = performance.now() - began;
    await sleep(500);
    const after = entries();
    const perTxn = after.map((x, s) => (x - before[s]) / N);
    rows.push({
      kind,
      txnPerSec: Math.round(N / (ms / 1000)),
      entriesPerTxnByShard: perTxn.map((x) => Number(x.toFixed(3))),
      entriesPerTxn: Number(perTxn.reduce((x, y) => x + y, 0).toFixed(3)),
    });
    process.stdout.write(
      `${kind.padEnd(6)} ${N} transfers, ${CONC} clients: ${rows.at(-1).txnPerSec} txn/s, log entries per transfer by shard ${perTxn.map((x) => x.toFixed(2)).join(" / ")}, total ${rows.at(-1).entriesPerTxn} (shard leaders ${l.join(",")})\n`,
    );
  }
  const idleBefore = entries();
  await sleep(2_000);
  const idle = entries().map((x, s) => x - idleBefore[s]);
  process.stdout.write(`idle 2 s: ${idle.join(" / ")} entries\n`);
  process.stdout.write(
    `${JSON.stringify({ bench: "txn-log-entries", n: N, clients: CONC, leaders: l, rows, idleEntries: idle })}\n`,
  );
  for (const c of Object.values(channels)) c.close();
} finally {
  cleanup();
}
process.exit(0);
