import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 100_000,
  });
}

// What a user of the published package does: install the tarball outside the workspace and
// import it by name, so a missing file in `files` or a wrong `exports` entry fails here.
const script = `
import { GrpcTransport, MemoryNetwork, FaultyTransport } from "@quorum/transport";

const network = new MemoryNetwork();
const m1 = new FaultyTransport(network.join("m1"));
const m2 = network.join("m2");
const memory = new Promise((resolve) => m2.subscribe("x", (from, payload) => resolve(from + ":" + Buffer.from(payload))));
m1.send("m2", "x", Buffer.from("memory"));

const a = new GrpcTransport({ nodeId: "a", clusterId: "pack", listen: "127.0.0.1:0" });
const b = new GrpcTransport({ nodeId: "b", clusterId: "pack", listen: "127.0.0.1:0" });
await a.start();
const address = await b.start();
a.addPeer({ id: "b", address });
const grpc = new Promise((resolve) => b.subscribe("x", (from, payload) => resolve(from + ":" + Buffer.from(payload))));
a.send("b", "x", Buffer.from("grpc"));
const timeout = setTimeout(() => { console.error("timed out"); process.exit(2); }, 20000);
console.log(JSON.stringify([await memory, await grpc]));
clearTimeout(timeout);
await Promise.all([a.close(), b.close(), m1.close(), m2.close()]);
`;

describe("published package", () => {
  it("installs from its tarball and works from a plain ESM project", { timeout: 120_000 }, () => {
    run("pnpm", ["exec", "tsc", "-p", "tsconfig.build.json"], packageDir);
    const packDir = mkdtempSync(join(tmpdir(), "quorum-pack-"));
    const projectDir = mkdtempSync(join(tmpdir(), "quorum-consumer-"));
    temps.push(packDir, projectDir);
    run("pnpm", ["pack", "--pack-destination", packDir], packageDir);
    const tarball = readdirSync(packDir).find((name) => name.endsWith(".tgz"));
    expect(tarball).toBeDefined();
    writeFileSync(
      join(projectDir, "package.json"),
      JSON.stringify({ name: "consumer", version: "1.0.0", private: true, type: "module" }),
    );
    run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--loglevel=error", join(packDir, tarball!)],
      projectDir,
    );
    writeFileSync(join(projectDir, "main.mjs"), script);
    const output = run("node", ["main.mjs"], projectDir);
    expect(JSON.parse(output.trim())).toEqual(["m1:memory", "a:grpc"]);
    // Only the index is public: deep imports of build files are refused by the exports map.
    expect(() =>
      run(
        "node",
        ["--input-type=module", "-e", 'await import("@quorum/transport/dist/peer-connection.js")'],
        projectDir,
      ),
    ).toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });
});
