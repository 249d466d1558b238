// Parent side of raft-process.mjs: starts N node processes on 127.0.0.1 (free ports picked
// once, kept across restarts), talks to them over IPC, SIGKILLs and restarts them.
// Used by test/process.test.ts and bench/raft-bench.mjs.
import { fork } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const hostScript = fileURLToPath(new URL("./raft-process.mjs", import.meta.url));
export const distEntry = fileURLToPath(new URL("../dist/index.js", import.meta.url));

export function distBuilt() {
  return existsSync(distEntry);
}

/** A port the OS says is free right now (closed again before use: a small race, fine on loopback). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export class ProcessCluster {
  /**
   * @param {{ size?: number, mode?: "record" | "count", execArgv?: Record<string, string[]>,
   *   stdio?: "inherit" | "ignore" }} [options]
   */
  constructor(options = {}) {
    this.size = options.size ?? 3;
    this.mode = options.mode ?? "record";
    this.execArgv = options.execArgv ?? {};
    this.stdio = options.stdio ?? "inherit";
    this.dir = mkdtempSync(join(tmpdir(), "quorum-raft-proc-"));
    this.ids = Array.from({ length: this.size }, (_, i) => `n${i + 1}`);
    /** @type {Map<string, { child: import("node:child_process").ChildProcess, pending: Map<number, Function>, exited: Promise<void> }>} */
    this.procs = new Map();
    this.peers = [];
    this.seq = 0;
  }

  async start() {
    const ports = [];
    for (const _ of this.ids) ports.push(await freePort());
    this.peers = this.ids.map((id, i) => ({ id, address: `127.0.0.1:${ports[i]}` }));
    await Promise.all(this.ids.map((id) => this.spawn(id)));
  }

  /** Starts (or restarts) one node process on its data dir and port. */
  spawn(id) {
    const peerArg = this.peers.map((p) => `${p.id}=${p.address}`).join(",");
    const child = fork(hostScript, ["--id", id, "--peers", peerArg, "--dir", this.dir, "--mode", this.mode], {
      stdio: ["ignore", this.stdio, this.stdio, "ipc"],
      execArgv: this.execArgv[id] ?? [],
    });
    const pending = new Map();
    let onReady;
    let onFail;
    const ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    const exited = new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        for (const [, settle] of pending) settle({ ok: false, error: `${id} exited (${code ?? signal})` });
        pending.clear();
        onFail(new Error(`${id} exited before ready (${code ?? signal})`));
        resolve();
      }),
    );
    child.on("message", (msg) => {
      if (msg.type === "ready") return onReady();
      const settle = pending.get(msg.id);
      if (settle) {
        pending.delete(msg.id);
        settle(msg);
      }
    });
    this.procs.set(id, { child, pending, exited });
    return ready;
  }

  alive(id) {
    const p = this.procs.get(id);
    return p !== undefined && p.child.exitCode === null && p.child.signalCode === null;
  }

  liveIds() {
    return this.ids.filter((id) => this.alive(id));
  }

  pid(id) {
    return this.procs.get(id)?.child.pid;
  }

  /** One IPC request; rejects with the node's error or when the process exits. */
  call(id, op, args = {}) {
    const proc = this.procs.get(id);
    if (!proc || !this.alive(id)) return Promise.reject(new Error(`${id} is not running`));
    const reqId = ++this.seq;
    return new Promise((resolve, reject) => {
      proc.pending.set(reqId, (msg) => (msg.ok ? resolve(msg) : reject(new Error(msg.error))));
      proc.child.send({ id: reqId, op, ...args });
    });
  }

  /** SIGKILL; resolves once the process is gone. */
  async kill(id) {
    const proc = this.procs.get(id);
    if (!proc) return;
    if (this.alive(id)) proc.child.kill("SIGKILL");
    await proc.exited;
  }

  /** SIGSTOP: the process hangs with its connections open (no reset tells its peers). */
  freeze(id) {
    if (this.alive(id)) this.procs.get(id).child.kill("SIGSTOP");
  }

  async statuses() {
    const out = {};
    await Promise.all(
      this.liveIds().map(async (id) => {
        try {
          out[id] = await this.call(id, "status");
        } catch {}
      }),
    );
    return out;
  }

  /** Waits until a live node is leader and every live node agrees on it; returns its id. */
  async waitForLeader(timeoutMs = 10_000, exclude = undefined) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const s = await this.statuses();
      const leaders = Object.entries(s).filter(([, v]) => v.role === "leader");
      if (leaders.length === 1) {
        const [leader, st] = leaders[0];
        const agreed = Object.values(s).every((v) => v.leader === leader && v.term === st.term);
        if (leader !== exclude && agreed) return leader;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no leader within ${timeoutMs} ms: ${JSON.stringify(await this.statuses())}`);
  }

  /** Waits until every live node has applied at least `index`. */
  async waitApplied(index, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const s = await this.statuses();
      const ids = this.liveIds();
      if (ids.every((id) => s[id] && s[id].applied >= index)) return s;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(
      `not all applied ${index} within ${timeoutMs} ms: ${JSON.stringify(await this.statuses())}`,
    );
  }

  /** Kills every process (SIGKILL) and removes the data dir. */
  async destroy() {
    await Promise.all(this.ids.map((id) => this.kill(id)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
