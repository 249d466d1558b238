import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTestCa, type TestCa } from "@quorum/transport/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freeBasePort } from "./ports.js";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

describe("quorum node with mutual TLS for clients and peers", () => {
  let dir: string;
  let ca: TestCa;
  let client: { certFile: string; keyFile: string };
  const nodes: ChildProcess[] = [];
  let endpoints: string[] = [];

  function etcdctl(endpoint: string, tls: boolean, ...args: string[]) {
    const flags = tls ? ["--cacert", ca.caFile, "--cert", client.certFile, "--key", client.keyFile] : [];
    return spawnSync("etcdctl", ["--endpoints", endpoint, "--command-timeout=3s", ...flags, ...args], {
      encoding: "utf8",
      env: { ...process.env, ETCDCTL_API: "3" },
    });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "quorum-tls-cluster-"));
    ca = makeTestCa("quorum-test-ca");
    client = ca.issue("client");
    const base = await freeBasePort();
    const names = ["n1", "n2", "n3"];
    endpoints = names.map((_, i) => `127.0.0.1:${base + 10 * i}`);
    const initialCluster = names.map((n, i) => `${n}=127.0.0.1:${base + 10 * i + 1}`).join(",");
    for (const [i, name] of names.entries()) {
      const cert = ca.issue(name);
      const tls = ["--cert-file", cert.certFile, "--key-file", cert.keyFile, "--trusted-ca-file", ca.caFile];
      const peerTls = tls.map((arg) => (arg.startsWith("--") ? `--peer-${arg.slice(2)}` : arg));
      nodes.push(
        spawn(
          process.execPath,
          [
            cli,
            "node",
            "--name",
            name,
            "--data-dir",
            join(dir, name),
            "--listen-client",
            endpoints[i]!,
            "--listen-peer",
            `127.0.0.1:${base + 10 * i + 1}`,
            "--initial-cluster",
            initialCluster,
            "--log-level",
            "warn",
            ...tls,
            ...peerTls,
          ],
          { stdio: "ignore" },
        ),
      );
    }
  });

  afterAll(() => {
    for (const node of nodes) node.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    ca.remove();
  });

  it("serves etcdctl with a client certificate, through followers, and refuses it without one", async () => {
    const deadline = Date.now() + 20_000;
    let status = etcdctl(endpoints.join(","), true, "endpoint", "status");
    while ((status.stdout.match(/, true, false,/g) ?? []).length !== 1) {
      if (Date.now() > deadline) throw new Error(`no leader over TLS: ${status.stdout}${status.stderr}`);
      await new Promise((r) => setTimeout(r, 300));
      status = etcdctl(endpoints.join(","), true, "endpoint", "status");
    }
    // Every node accepts the write; followers forward it to the leader over TLS.
    for (const [i, endpoint] of endpoints.entries()) {
      const put = etcdctl(endpoint, true, "put", `secure-${i}`, "yes");
      expect(put.stderr).toBe("");
      expect(put.stdout.trim()).toBe("OK");
    }
    const get = etcdctl(endpoints[1]!, true, "get", "--prefix", "secure-");
    expect(get.stdout.trim().split("\n")).toEqual(["secure-0", "yes", "secure-1", "yes", "secure-2", "yes"]);

    const plaintext = etcdctl(endpoints[0]!, false, "get", "secure-0");
    expect(plaintext.status).not.toBe(0);
  }, 60_000);

  it("refuses a half-configured or unreadable TLS setup with one line and exit code 2", () => {
    const half = spawnSync(process.execPath, [cli, "node", "--name", "x", "--cert-file", "a.pem"], {
      encoding: "utf8",
    });
    expect(half.status).toBe(2);
    expect(half.stderr).toMatch(/--cert-file, --key-file and --trusted-ca-file go together/);
    const missing = spawnSync(
      process.execPath,
      [
        cli,
        "node",
        "--name",
        "x",
        "--peer-cert-file",
        "/no/cert",
        "--peer-key-file",
        "/no/key",
        "--peer-trusted-ca-file",
        "/no/ca",
      ],
      { encoding: "utf8" },
    );
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    expect(missing.stderr).toMatch(/--peer-\*: tls: cannot read/);
  });
});
