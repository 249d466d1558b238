import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const chromiumPath = "/usr/bin/chromium";
const outputDir = fileURLToPath(new URL("../test-output/", import.meta.url));

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

/** A dashboard port and a node base port with base..base+22 free. */
async function freePorts(): Promise<{ port: number; base: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const port = base + 30;
    if (await portsFree([0, 1, 2, 10, 11, 12, 20, 21, 22, 30].map((d) => base + d))) return { port, base };
  }
  throw new Error("no free port range found");
}

describe("the demo's dashboard in headless chromium", () => {
  let dir: string;
  let demo: ChildProcess;
  let output = "";
  let context: BrowserContext | undefined;
  let page: Page;
  let url: string;

  beforeAll(async () => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` (pnpm test does it)`);
    if (!existsSync(chromiumPath)) {
      throw new Error(`${chromiumPath} is missing: apt-get install -y chromium (.ci/run does it)`);
    }
    dir = mkdtempSync(join(tmpdir(), "quorum-dashboard-"));
    const { port, base } = await freePorts();
    url = `http://127.0.0.1:${port}`;
    // Its own process group, so that afterAll can kill the demo, its nodes and workers at once.
    demo = spawn(
      process.execPath,
      [cli, "demo", "--port", String(port), "--base-port", String(base), "--data-dir", join(dir, "data")],
      { stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    demo.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    demo.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const deadline = Date.now() + 15_000;
    while (!/dashboard: http/.test(output)) {
      if (demo.exitCode !== null || Date.now() > deadline)
        throw new Error(`the demo did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    context = await chromium.launchPersistentContext(join(dir, "chromium-profile"), {
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
    page = context.pages()[0] ?? (await context.newPage());
  }, 40_000);

  afterAll(async () => {
    await context?.close().catch(() => {});
    if (demo?.pid) {
      try {
        process.kill(-demo.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const leaders = () => page.locator('[data-node][data-role="leader"]');
  const text = async (testid: string) => (await page.getByTestId(testid).textContent())?.trim() ?? "";

  it("shows three nodes and one leader; after the leader is killed, a new one and the same bank total", async () => {
    await page.goto(url);
    await expect.poll(() => page.locator("[data-node]").count(), { timeout: 10_000 }).toBe(3);
    await expect.poll(() => leaders().count(), { timeout: 15_000, interval: 200 }).toBe(1);
    const oldLeader = (await leaders().getAttribute("data-node"))!;
    expect(await text("leader")).toBe(oldLeader);

    // The workloads run: transfers commit and the audited total is the expected one.
    const expected = await text("bank-expected");
    expect(Number(expected)).toBeGreaterThan(0);
    await expect
      .poll(async () => Number(await text("bank-committed")), { timeout: 15_000 })
      .toBeGreaterThan(0);
    await expect.poll(() => text("bank-total"), { timeout: 5_000 }).toBe(expected);

    await page.getByTestId(`kill-${oldLeader}`).click();
    await expect
      .poll(() => page.getByTestId(`node-${oldLeader}`).getAttribute("data-role"), { timeout: 5_000 })
      .toBe("down");
    await expect
      .poll(async () => ((await leaders().count()) === 1 ? leaders().getAttribute("data-node") : "none"), {
        timeout: 20_000,
        interval: 200,
      })
      .not.toMatch(new RegExp(`^(none|${oldLeader})$`));
    const newLeader = await leaders().getAttribute("data-node");
    expect(await text("leader")).toBe(newLeader);

    // Transfers go on under the new leader, and no money appeared or vanished.
    const committed = Number(await text("bank-committed"));
    await expect
      .poll(async () => Number(await text("bank-committed")), { timeout: 20_000 })
      .toBeGreaterThan(committed + 10);
    await expect.poll(() => text("bank-total"), { timeout: 5_000 }).toBe(expected);
    expect(await text("kv-stale")).toBe("0");
    await expect
      .poll(() => text("events"), { timeout: 5_000 })
      .toMatch(new RegExp(`${newLeader} is the leader`));

    mkdirSync(outputDir, { recursive: true });
    await page.screenshot({ path: join(outputDir, "dashboard.png"), fullPage: true });
  }, 60_000);
});
