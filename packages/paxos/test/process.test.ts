import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Real processes: three `quorum node --consensus paxos` over gRPC with SQLite files, driven by
// the real etcdctl. The leader is SIGKILLed, then every node; acknowledged puts must survive.

const root = fileURLToPath(new URL("../../../", import.meta.url));
const cli = join(root, "apps/demo/dist/cli.js");
const names = ["n1", "n2", "n3"];

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ports = [0, 1, 10, 11, 20, 21].map((d) => base + d);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error("no free port range found");
}

function etcdctl(endpoint: string, ...args: string[]): string {
  return execFileSync("/usr/bin/etcdctl", ["--endpoints", endpoint, "--command-timeout=3s", ...args], {
    encoding: "utf8",
    env: { ...process.env, ETCDCTL_API: "3" },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

async function until<T>(what: string, f: () => T, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return f();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${last}`);
}

describe("three real node processes on --consensus paxos (SIGKILL)", () => {
  let dir: string;
  let base: number;
  const procs = new Map<string, ChildProcess>();
  const stderr = new Map<string, string>();
  const client = (name: string) => `127.0.0.1:${base + 10 * names.indexOf(name)}`;
  const peer = (name: string) => `127.0.0.1:${base + 10 * names.indexOf(name) + 1}`;

  const start = (name: string) => {
    const child = spawn(
      process.execPath,
      [
        cli,
        "node",
        "--name",
        name,
        "--data-dir",
        join(dir, name),
        "--listen-client",
        client(name),
        "--listen-peer",
        peer(name),
        "--initial-cluster",
        names.map((n) => `${n}=${peer(n)}`).join(","),
        "--consensus",
        "paxos",
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    stderr.set(name, "");
    child.stderr!.on("data", (b: Buffer) =>
      stderr.set(name, (stderr.get(name)! + b.toString()).slice(-4000)),
    );
    procs.set(name, child);
  };
  const kill = async (name: string) => {
    const child = procs.get(name);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await gone;
  };
  /** A put through whichever live node takes it; returns the endpoint that did. */
  const put = (key: string, value: string, among: readonly string[]) =>
    until(`put ${key}`, () => {
      let last: unknown;
      for (const n of among) {
        try {
          if (etcdctl(client(n), "put", key, value).includes("OK")) return n;
        } catch (e) {
          last = e;
        }
      }
      throw last;
    });

  beforeAll(() => {
    if (!existsSync(cli)) {
      execFileSync("pnpm", ["exec", "turbo", "run", "build", "--filter=@quorum/demo"], {
        cwd: root,
        env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1", npm_config_nodedir: "/usr" },
        stdio: "ignore",
        timeout: 240_000,
      });
    }
    if (!existsSync(cli))
      throw new Error(`${cli} is missing; build it: pnpm exec turbo run build --filter=@quorum/demo`);
    if (!existsSync("/usr/bin/etcdctl"))
      throw new Error("/usr/bin/etcdctl is missing (apt-get install etcd-client)");
    dir = mkdtempSync(join(tmpdir(), "paxos-process-"));
  }, 250_000);

  afterAll(async () => {
    for (const name of procs.keys()) await kill(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a new leader commits after the leader is SIGKILLed; after SIGKILL of all and a restart every acknowledged put is there", {
    timeout: 90_000,
  }, async () => {
    base = await freeBasePort();
    for (const n of names) start(n);
    const acked = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      await put(`k${i}`, `v${i}`, names);
      acked.set(`k${i}`, `v${i}`);
    }

    const leader = await until("the leader from endpoint status", () => {
      for (const n of names) {
        const out = JSON.parse(etcdctl(client(n), "endpoint", "status", "-w", "json")) as {
          Status: { header: { member_id: number | string }; leader: number | string };
        }[];
        const st = out[0]!.Status;
        if (String(st.header.member_id) === String(st.leader)) return n;
      }
      throw new Error("no endpoint reports itself as the leader");
    });
    await kill(leader);
    const survivors = names.filter((n) => n !== leader);
    for (let i = 5; i < 10; i++) {
      await put(`k${i}`, `v${i}`, survivors);
      acked.set(`k${i}`, `v${i}`);
    }

    for (const n of names) await kill(n);
    for (const n of names) start(n);
    for (const [k, v] of acked) {
      const got = await until(`get ${k} after the restart`, () => {
        for (const n of names) {
          try {
            return etcdctl(client(n), "get", k, "--print-value-only").trim();
          } catch {
            // not up or not leader yet: try the next
          }
        }
        throw new Error("no node answered");
      });
      expect(got, `${k} (stderr: ${[...stderr.values()].join("\n")})`).toBe(v);
    }
  });
});
