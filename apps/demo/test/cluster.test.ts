import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freeBasePort } from "./ports.js";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

function etcdctl(endpoints: string, ...args: string[]): string {
  return etcdctlWithInput(endpoints, "", ...args);
}

function etcdctlWithInput(endpoints: string, input: string, ...args: string[]): string {
  return execFileSync("etcdctl", ["--endpoints", endpoints, "--command-timeout=5s", ...args], {
    encoding: "utf8",
    input,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ETCDCTL_API: "3" },
  });
}

// With 3 shards the key space splits at "@" and "_": one key per shard.
const shardPrefixes = ["0", "K", "k"];

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
  throw new Error(`timed out waiting for ${what}: ${last}`);
}

for (const [consensus, shards] of [
  ["raft", 1],
  ["paxos", 1],
  ["raft", 3],
] as const) {
  describe(`quorum cluster --consensus ${consensus} --shards ${shards}`, () => {
    let dir: string;
    let cluster: ChildProcess;
    let exited: Promise<number | null>;
    let endpoints: string[];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "quorum-cluster-"));
      const base = await freeBasePort();
      endpoints = [0, 1, 2].map((i) => `127.0.0.1:${base + 10 * i}`);
      cluster = spawn(
        process.execPath,
        [
          cli,
          "cluster",
          "--nodes",
          "3",
          "--data-dir",
          dir,
          "--base-port",
          String(base),
          "--consensus",
          consensus,
          "--shards",
          String(shards),
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      exited = new Promise((resolve) => cluster.once("exit", (code) => resolve(code)));
    });

    afterAll(async () => {
      cluster.kill("SIGKILL");
      try {
        execFileSync("pkill", ["-9", "-f", dir]);
      } catch {
        // no node left to kill
      }
      rmSync(dir, { recursive: true, force: true });
    });

    it("serves etcdctl through every node and stops cleanly on SIGTERM", async () => {
      const all = endpoints.join(",");
      await until("a leader", () => {
        const status = etcdctl(all, "endpoint", "status");
        if ((status.match(/, true, false,/g) ?? []).length !== 1) throw new Error(status);
      });
      // Node i serves /status, /metrics and /health on base+10i+2. Status above speaks for
      // shard 0; every node must also know a leader for every other shard before writing.
      const http = endpoints.map((e) => e.replace(/:(\d+)$/, (_, p) => `:${Number(p) + 2}`));
      const deadline = Date.now() + 20_000;
      for (;;) {
        const statuses = (await Promise.all(
          http.map((h) => fetch(`http://${h}/status`).then((r) => r.json())),
        )) as { shards: { leaderId?: string }[] }[];
        if (statuses.every((st) => st.shards.length === shards && st.shards.every((x) => x.leaderId))) break;
        if (Date.now() > deadline) throw new Error(`shard leaders unknown: ${JSON.stringify(statuses)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      // Write through each node in turn (followers forward), read back through another.
      for (const [i, endpoint] of endpoints.entries()) {
        expect(etcdctl(endpoint, "put", `${shardPrefixes[i]}key-${i}`, `value-${i}`).trim()).toBe("OK");
      }
      const read = etcdctl(endpoints[2]!, "get", "", "--from-key");
      expect(read.trim().split("\n")).toEqual([
        "0key-0",
        "value-0",
        "Kkey-1",
        "value-1",
        "kkey-2",
        "value-2",
      ]);
      const members = etcdctl(all, "member", "list").trim().split("\n");
      expect(members).toHaveLength(3);
      for (const line of members)
        expect(line).toMatch(/, started, n\d, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+/);

      const health = await fetch(`http://${http[0]}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ health: "true" });
      const metrics = await (await fetch(`http://${http[1]}/metrics`)).text();
      expect(metrics).toMatch(/^# HELP /m);

      // A Txn within one shard commits, and so does one that spans shards (two-phase commit).
      const sameShard = 'value("kkey-2") = "value-2"\n\nput kkey-3 v3\n\n\n';
      expect(etcdctlWithInput(all, sameShard, "txn").trim().split("\n")[0]).toBe("SUCCESS");
      if (shards > 1) {
        const spanning = 'value("0key-0") = "value-0"\n\nput kkey-4 v4\nput 0key-4 v4\n\n\n';
        expect(etcdctlWithInput(all, spanning, "txn").trim().split("\n")[0]).toBe("SUCCESS");
        expect(etcdctlWithInput(all, "", "get", "0key-4", "--print-value-only").trim()).toBe("v4");
      }

      cluster.kill("SIGTERM");
      expect(await exited).toBe(0);

      // A node refuses a data dir made with another shard count.
      const other = spawnSync(
        process.execPath,
        [cli, "node", "--name", "n1", "--data-dir", join(dir, "n1"), "--shards", String(shards + 1)],
        { encoding: "utf8" },
      );
      expect(other.status).toBe(2);
      expect(other.stderr).toMatch(
        new RegExp(`was created with --consensus ${consensus} --shards ${shards}`),
      );
    }, 60_000);
  });
}
