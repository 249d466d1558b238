import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";

export const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
export const chromiumPath = "/usr/bin/chromium";

function portsFree(ports: number[]): Promise<boolean> {
  return Promise.all(
    ports.map(
      (port) =>
        new Promise<boolean>((resolve) => {
          const server = createServer();
          server.once("error", () => resolve(false));
          server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
        }),
    ),
  ).then((ok) => ok.every(Boolean));
}

/** A dashboard port and a node base port with base..base+22 free (3 nodes). */
export async function freePorts(): Promise<{ port: number; base: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const port = base + 30;
    if (await portsFree([0, 1, 2, 10, 11, 12, 20, 21, 22, 30].map((d) => base + d))) return { port, base };
  }
  throw new Error("no free port range found");
}

export interface RunningDemo {
  process: ChildProcess;
  url: string;
  /** Everything the demo printed so far. */
  output(): string;
  /** SIGKILL to the demo's process group: the demo, its nodes and MapReduce workers. */
  kill(): void;
}

/**
 * Starts `quorum demo` in its own process group on free ports and resolves once it prints
 * the dashboard's address (before the cluster has elected anyone).
 */
export async function startDemo(
  dataDir: string,
  extraArgs: string[] = [],
  deadlineMs = 60_000,
): Promise<RunningDemo> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` (pnpm test does it)`);
  const { port, base } = await freePorts();
  const child = spawn(
    process.execPath,
    [cli, "demo", "--port", String(port), "--base-port", String(base), "--data-dir", dataDir, ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const demo: RunningDemo = {
    process: child,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    kill() {
      if (child.pid === undefined || child.exitCode !== null) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    },
  };
  const deadline = Date.now() + deadlineMs;
  while (!/dashboard: http/.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      demo.kill();
      throw new Error(`the demo did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return demo;
}

/** Debian's chromium, headless, with a profile under `dir` (no browser download). */
export async function openBrowser(dir: string): Promise<{ context: BrowserContext; page: Page }> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`${chromiumPath} is missing: apt-get install -y chromium (.ci/run does it)`);
  }
  const context = await chromium.launchPersistentContext(join(dir, "chromium-profile"), {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1400, height: 1000 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page };
}

/** The dashboard as the test reads it: per-shard leaders from the node cards' shard rows. */
export function dashboard(page: Page) {
  const text = async (testid: string) => (await page.getByTestId(testid).textContent())?.trim() ?? "";
  return {
    text,
    number: async (testid: string) => Number(await text(testid)),
    /** Nodes whose row for `shard` says leader. */
    leadersOf: (shard: number) =>
      page
        .locator(`[data-shard-row][data-shard="${shard}"][data-role="leader"]`)
        .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-node") ?? "")),
    /** The leader of `shard` shown in the header ("" while there is none). */
    headerLeader: async (shard: number) =>
      (await page.getByTestId(`shard-leader-${shard}`).getAttribute("data-leader")) ?? "",
    nodeRole: (node: string) => page.getByTestId(`node-${node}`).getAttribute("data-role"),
  };
}
