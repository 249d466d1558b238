#!/usr/bin/env node
// Runs ONE RaftNode in this process, from the built dist, over GrpcTransport, with a
// SqliteLogStore (WAL, synchronous=FULL) and a small durable SQLite state machine. Driven by
// its parent over IPC (used by test/process.test.ts and bench/raft-bench.mjs).
//
//   node raft-process.mjs --id n1 --peers n1=127.0.0.1:7001,n2=...,n3=... --dir /tmp/x
//       [--mode record|count] [--cluster quorum-proc]
//
// The node listens on its own entry in --peers. Files: <dir>/<id>-log.db, <dir>/<id>-sm.db.
// State machine modes (both keep the applied index in the same transaction as the effect,
// DESIGN rule 4):
//   record: one row per command (index, bytes): "read back all applied commands".
//   count:  one row: count, a rolling checksum of the commands, the applied index (benchmark).
// The state machine's SQLite runs with synchronous=NORMAL (a crash may lose its last
// transactions, never tear one; the log, fsynced, replays them from appliedIndex()+1);
// snapshot() checkpoints the WAL with a sync first, so an image never gets ahead of the disk.
//
// IPC requests { id, op, ... } are answered { id, ok, ... } / { id, ok: false, error }:
//   status                                  → role, term, leader, commit, applied
//   propose   { count? | durationMs?, concurrency, bytes, timeoutMs, prefix? }
//                                           → committed, failed, errors, elapsedMs,
//                                             p50/p90/p99/max µs, indexes? (record mode)
//   probe     { intervalMs }                → starts a loop proposing until the first
//                                             success; answers { at } (epoch ms, µs precision)
//   stopProbe                               → stops a running probe loop
//   applied                                 → every applied command (record mode): [index, text]
//   rss                                     → process.memoryUsage().rss
//   close                                   → closes node + transport, then exits 0
// The parent receives { type: "ready", address } once the node has started.
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { bytesSnapshot, readSnapshot } from "@quorum/consensus";
import { GrpcTransport, seededRandom, systemClock } from "@quorum/transport";
import Database from "better-sqlite3";
import hdr from "hdr-histogram-js";
import { RaftNode, SqliteLogStore } from "../dist/index.js";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const env = process.env[`RAFT_${name.toUpperCase()}`];
  return env ?? fallback;
}

const id = arg("id");
const peerList = arg("peers", "");
const dir = arg("dir");
const mode = arg("mode", "record");
const clusterId = arg("cluster", "quorum-proc");
if (!id || !peerList || !dir) {
  console.error("usage: raft-process.mjs --id ID --peers id=host:port,... --dir DIR [--mode record|count]");
  process.exit(2);
}
const peers = peerList.split(",").map((p) => {
  const [pid, address] = p.split("=");
  return { id: pid, address };
});
const self = peers.find((p) => p.id === id);
if (!self) throw new Error(`--peers lacks ${id}`);
mkdirSync(dir, { recursive: true });

const now = () => performance.timeOrigin + performance.now();

/** A durable SQLite state machine; see the header. */
function openStateMachine(path, kind) {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(`
    CREATE TABLE IF NOT EXISTS sm_meta (k INTEGER PRIMARY KEY CHECK (k = 0), applied INTEGER NOT NULL,
      count INTEGER NOT NULL, digest BLOB NOT NULL);
    INSERT OR IGNORE INTO sm_meta VALUES (0, 0, 0, zeroblob(32));
    CREATE TABLE IF NOT EXISTS sm_commands (idx INTEGER PRIMARY KEY, cmd BLOB NOT NULL);
  `);
  const getMeta = db.prepare("SELECT applied, count, digest FROM sm_meta WHERE k = 0");
  const putMeta = db.prepare("UPDATE sm_meta SET applied = ?, count = ?, digest = ? WHERE k = 0");
  const insert = db.prepare("INSERT INTO sm_commands (idx, cmd) VALUES (?, ?)");
  const all = db.prepare("SELECT idx, cmd FROM sm_commands ORDER BY idx");
  let meta = getMeta.get();
  const applyTx = db.transaction((entries) => {
    let { count, digest } = meta;
    const results = [];
    for (const e of entries) {
      count++;
      digest = createHash("sha256").update(digest).update(e.command).digest();
      if (kind === "record") insert.run(e.index, e.command);
      results.push(count);
    }
    const applied = entries[entries.length - 1].index;
    putMeta.run(applied, count, digest);
    meta = { applied, count, digest };
    return results;
  });
  const restoreTx = db.transaction((image) => {
    const m = JSON.parse(Buffer.from(image).toString("utf8"));
    db.exec("DELETE FROM sm_commands");
    for (const [idx, hex] of m.commands) insert.run(idx, Buffer.from(hex, "hex"));
    putMeta.run(m.applied, m.count, Buffer.from(m.digest, "hex"));
  });
  return {
    db,
    appliedIndex: () => meta.applied,
    count: () => meta.count,
    digest: () => Buffer.from(meta.digest).toString("hex"),
    apply: (entries) => (entries.length === 0 ? [] : applyTx(entries)),
    commands: () => all.all().map((r) => [r.idx, Buffer.from(r.cmd).toString("utf8")]),
    async snapshot() {
      db.pragma("wal_checkpoint(FULL)");
      const commands =
        kind === "record" ? all.all().map((r) => [r.idx, Buffer.from(r.cmd).toString("hex")]) : [];
      const image = JSON.stringify({
        applied: meta.applied,
        count: meta.count,
        digest: Buffer.from(meta.digest).toString("hex"),
        commands,
      });
      return bytesSnapshot(meta.applied, Buffer.from(image));
    },
    async restore(snapshot) {
      restoreTx(await readSnapshot(snapshot));
      db.pragma("wal_checkpoint(FULL)");
      meta = getMeta.get();
    },
  };
}

const machine = openStateMachine(join(dir, `${id}-sm.db`), mode);
// The log's writes and fsyncs run on a worker thread (SqliteLogStore's default);
// RAFT_WRITER_THREAD=0 makes them inline, on the event loop (for comparison).
const storage = new SqliteLogStore({
  path: join(dir, `${id}-log.db`),
  writerThread: process.env.RAFT_WRITER_THREAD !== "0",
});
const transport = new GrpcTransport({
  nodeId: id,
  clusterId,
  listen: self.address,
  peers: peers.filter((p) => p.id !== id),
  backoff: { initialMs: 20, maxMs: 200 },
});
const seed = [...`${id}:${process.pid}`].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
const node = new RaftNode({
  id,
  peers,
  transport,
  clock: systemClock,
  storage,
  stateMachine: machine,
  random: seededRandom(seed),
  snapshotDir: join(dir, `${id}-snapshots`),
});
await transport.start();
await node.start();

let probe;

const handlers = {
  status() {
    const s = node.status();
    return {
      role: s.role,
      term: s.term,
      leader: s.leaderId,
      commit: s.commitIndex,
      applied: s.appliedIndex,
      count: machine.count(),
      digest: machine.digest(),
      lastIndex: storage.lastIndex(),
    };
  },
  rss() {
    return { rss: process.memoryUsage().rss };
  },
  applied() {
    return { commands: machine.commands(), applied: machine.appliedIndex() };
  },
  async propose({
    count = Number.MAX_SAFE_INTEGER,
    durationMs,
    concurrency,
    bytes = 0,
    timeoutMs = 5_000,
    prefix,
  }) {
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
    const payload = Buffer.alloc(bytes, 0x61);
    let next = 0;
    let committed = 0;
    let failed = 0;
    const errors = {};
    const indexes = [];
    const started = now();
    const stopAt = durationMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + durationMs;
    const worker = async () => {
      while (next < count && performance.now() < stopAt) {
        const n = next++;
        const command = prefix === undefined ? payload : Buffer.from(`${prefix}${n}`);
        const t0 = performance.now();
        try {
          const r = await node.propose(command, { timeoutMs });
          histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
          committed++;
          if (prefix !== undefined) indexes.push([r.index, `${prefix}${n}`]);
        } catch (err) {
          failed++;
          const code = err?.code ?? err?.message ?? String(err);
          errors[code] = (errors[code] ?? 0) + 1;
          if (code === "NOT_LEADER" || code === "SHUTTING_DOWN") return;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsedMs = now() - started;
    const out = {
      committed,
      failed,
      errors,
      elapsedMs,
      p50us: histogram.getValueAtPercentile(50),
      p90us: histogram.getValueAtPercentile(90),
      p99us: histogram.getValueAtPercentile(99),
      maxUs: histogram.maxValue,
      indexes: prefix === undefined ? undefined : indexes,
    };
    histogram.destroy?.();
    return out;
  },
  probe({ intervalMs = 2, timeoutMs = 1_000 }) {
    // Proposes until the first success: the first commit this node sees as a leader.
    const state = { stopped: false };
    probe = state;
    return new Promise((resolve) => {
      let attempts = 0;
      const loop = async () => {
        while (!state.stopped) {
          attempts++;
          try {
            const r = await node.propose(Buffer.from(`probe-${id}`), { timeoutMs });
            resolve({ at: now(), index: r.index, attempts, term: node.status().term });
            return;
          } catch {
            await new Promise((r) => setTimeout(r, intervalMs));
          }
        }
        resolve({ at: undefined, attempts });
      };
      void loop();
    });
  },
  stopProbe() {
    if (probe) probe.stopped = true;
    return {};
  },
  async close() {
    await node.close();
    await transport.close();
    machine.db.close();
    storage.db.close();
    setImmediate(() => process.exit(0));
    return {};
  },
};

process.on("message", (msg) => {
  const handler = handlers[msg.op];
  if (!handler) {
    process.send({ id: msg.id, ok: false, error: `unknown op ${msg.op}` });
    return;
  }
  Promise.resolve()
    .then(() => handler(msg))
    .then(
      (result) => process.send({ id: msg.id, ok: true, ...result }),
      (err) => process.send({ id: msg.id, ok: false, error: String(err?.stack ?? err) }),
    );
});
process.on("disconnect", () => process.exit(0));
process.send({ type: "ready", address: self.address, pid: process.pid });
