import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { freeBasePort } from "./ports.js";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

function quorum(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("quorum CLI", () => {
  beforeAll(() => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` (pnpm test does it)`);
  });

  it("prints help with exit code 0", () => {
    const r = quorum("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: quorum/);
    expect(r.stdout).toMatch(/demo/);
  });

  it("prints its version", () => {
    const r = quorum("--version");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it("rejects an unknown command with one line and exit code 2", () => {
    const r = quorum("frobnicate");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
  });

  it("rejects a bad flag value with one line and exit code 2", () => {
    const r = quorum("demo", "--nodes", "zero");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/--nodes must be a positive integer/);
  });

  it("rejects an unknown flag with exit code 2", () => {
    const r = quorum("demo", "--bogus");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--bogus'/);
  });

  it.each([
    [["node", "--name", "n1", "--initial-cluster", "n1=127.0.0.1"], /is not host:port/],
    [["node", "--name", "n1", "--initial-cluster", "n2=127.0.0.1:2380"], /does not list this node \("n1"\)/],
    [["node", "--name", "n1", "--initial-cluster", "n1=127.0.0.1:1,n1=127.0.0.1:2"], /listed twice/],
    [["node", "--name", "n1", "--consensus", "zab"], /is not one of raft, paxos/],
    [["node", "--name", "bad name"], /--name/],
    [["node", "--name", "n1", "--listen-client", "127.0.0.1:99999"], /--listen-client/],
    [["node", "--name", "n1", "--advertise-client-urls", "http://0.0.0.0:2379"], /is a wildcard/],
    [["node", "--name", "n1", "--advertise-client-urls", "a:1,b:2"], /must be one address/],
  ])("refuses bad node flags %j with one line and exit code 2", (args, message) => {
    const r = quorum(...args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });

  it("tells MemberList (and the other nodes) its --advertise-client-urls, not its listen address", async () => {
    const base = await freeBasePort();
    const dir = mkdtempSync(join(tmpdir(), "quorum-advertise-"));
    const node = spawn(
      process.execPath,
      [
        cli,
        "node",
        "--name",
        "n1",
        "--data-dir",
        join(dir, "n1"),
        "--listen-client",
        `127.0.0.1:${base}`,
        "--advertise-client-urls",
        `http://localhost:${base}`,
        "--listen-peer",
        `127.0.0.1:${base + 1}`,
      ],
      { stdio: "ignore" },
    );
    try {
      const members = () =>
        spawnSync("etcdctl", ["--endpoints", `127.0.0.1:${base}`, "member", "list", "-w", "json"], {
          encoding: "utf8",
          env: { ...process.env, ETCDCTL_API: "3" },
        });
      let r = members();
      for (let i = 0; i < 100 && r.status !== 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        r = members();
      }
      expect(r.stderr).toBe("");
      const list = JSON.parse(r.stdout) as { members: { name: string; clientURLs: string[] }[] };
      expect(list.members.map((m) => [m.name, m.clientURLs])).toEqual([["n1", [`http://localhost:${base}`]]]);
    } finally {
      node.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runs the transport demo: every message arrives, in order", () => {
    const r = quorum("demo", "transport", "--nodes", "3", "--messages", "200");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/delivered 1200 messages/);
    expect(r.stdout).toMatch(/out of order: 0/);
  });
});
