import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

/** A base port with base..base+22 free, so that a 3-node cluster's ports do not collide. */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ports = [0, 1, 2, 10, 11, 12, 20, 21, 22].map((d) => base + d);
    const ok = await Promise.all(
      ports.map(
        (port) =>
          new Promise<boolean>((resolve) => {
            const server = createServer();
            server.once("error", () => resolve(false));
            server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
          }),
      ),
    );
    if (ok.every(Boolean)) return base;
  }
  throw new Error("no free port range found");
}

function etcdctl(endpoints: string, ...args: string[]): string {
  return execFileSync("etcdctl", ["--endpoints", endpoints, "--command-timeout=5s", ...args], {
    encoding: "utf8",
    env: { ...process.env, ETCDCTL_API: "3" },
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
  throw new Error(`timed out waiting for ${what}: ${last}`);
}

for (const consensus of ["raft", "paxos"]) {
  describe(`quorum cluster --consensus ${consensus}`, () => {
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
      // Write through each node in turn (followers forward), read back through another.
      for (const [i, endpoint] of endpoints.entries()) {
        expect(etcdctl(endpoint, "put", `key-${i}`, `value-${i}`).trim()).toBe("OK");
      }
      const read = etcdctl(endpoints[2]!, "get", "--prefix", "key-");
      expect(read.trim().split("\n")).toEqual(["key-0", "value-0", "key-1", "value-1", "key-2", "value-2"]);
      const members = etcdctl(all, "member", "list").trim().split("\n");
      expect(members).toHaveLength(3);
      for (const line of members)
        expect(line).toMatch(/, started, n\d, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+/);

      // Node i serves /metrics and /health on base+10i+2.
      const http = endpoints.map((e) => e.replace(/:(\d+)$/, (_, p) => `:${Number(p) + 2}`));
      const health = await fetch(`http://${http[0]}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ health: "true" });
      const metrics = await (await fetch(`http://${http[1]}/metrics`)).text();
      expect(metrics).toMatch(/^# HELP /m);

      cluster.kill("SIGTERM");
      expect(await exited).toBe(0);
    }, 60_000);
  });
}
