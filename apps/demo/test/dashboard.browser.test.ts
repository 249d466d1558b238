import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboard, openBrowser, type RunningDemo, startDemo } from "./dashboard-helpers.js";

const outputDir = fileURLToPath(new URL("../test-output/", import.meta.url));
const shards = [0, 1, 2];

// The machine may be shared and loaded: every wait is for a condition, with a deadline far
// above what it takes on an idle machine (elections take about a second there).
const patient = { timeout: 120_000, interval: 250 };

describe.each(["raft", "paxos"])(
  "the demo's dashboard in headless chromium (3 nodes, 3 shards, %s)",
  (consensus) => {
    let dir: string;
    let demo: RunningDemo | undefined;
    let context: BrowserContext | undefined;
    let page: Page;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "quorum-dashboard-"));
      demo = await startDemo(join(dir, "data"), ["--consensus", consensus]);
      ({ context, page } = await openBrowser(dir));
    }, 180_000);

    afterAll(async () => {
      await context?.close().catch(() => {});
      demo?.kill();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("shows one leader per shard; after a shard's leader is killed, a new one and the same bank total", async () => {
      const d = dashboard(page);
      expect(demo!.output()).toContain(`3 nodes (${consensus}), 3 shards`);
      await page.goto(demo!.url);
      await expect.poll(() => page.locator(".node[data-node]").count(), patient).toBe(3);
      for (const shard of shards) {
        await expect.poll(async () => (await d.leadersOf(shard)).length, patient).toBe(1);
      }
      const oldLeader = (await d.leadersOf(0))[0]!;
      await expect.poll(() => d.headerLeader(0), patient).toBe(oldLeader);

      // Transfers commit, some of them between shards (two-phase commit), and audits (one
      // read-only Txn over all shards) see the expected total.
      const expected = await d.number("bank-expected");
      expect(expected).toBe(9000);
      await expect.poll(() => d.number("bank-cross-shard"), patient).toBeGreaterThan(0);
      await expect.poll(() => d.number("bank-audits"), patient).toBeGreaterThan(0);
      await expect.poll(() => d.number("xs-committed"), patient).toBeGreaterThan(0);
      expect(await d.number("bank-total")).toBe(expected);

      const committedBefore = await d.number("bank-committed");
      await page.getByTestId(`kill-${oldLeader}`).click();
      await expect.poll(() => d.nodeRole(oldLeader), patient).toBe("down");
      const auditsAtKill = await d.number("bank-audits");

      // Shard 0 elects another node; every shard the killed node led does too.
      await expect
        .poll(async () => {
          const leaders = await Promise.all(shards.map((s) => d.leadersOf(s)));
          return leaders.every((l) => l.length === 1 && l[0] !== oldLeader);
        }, patient)
        .toBe(true);
      const newLeader = (await d.leadersOf(0))[0]!;
      expect(newLeader).not.toBe(oldLeader);
      await expect.poll(() => d.headerLeader(0), patient).toBe(newLeader);
      await expect.poll(() => d.text("events"), patient).toContain(`shard 0: ${newLeader} is the leader`);

      // Transfers go on, and audits made after the kill still see every coin: no audit ever
      // saw another total.
      await expect.poll(() => d.number("bank-committed"), patient).toBeGreaterThan(committedBefore + 10);
      await expect.poll(() => d.number("bank-audits"), patient).toBeGreaterThan(auditsAtKill + 3);
      expect(await d.number("bank-total")).toBe(expected);
      expect(await d.text("bank-bad-audits")).toBe("0");
      expect(await d.text("kv-stale")).toBe("0");

      mkdirSync(outputDir, { recursive: true });
      await page.screenshot({
        path: join(outputDir, consensus === "raft" ? "dashboard.png" : `dashboard-${consensus}.png`),
        fullPage: true,
      });

      // The restart button brings the node back as a follower of every shard.
      await page.getByTestId(`restart-${oldLeader}`).click();
      await expect
        .poll(async () => {
          const roles = await page
            .locator(`[data-shard-row][data-node="${oldLeader}"]`)
            .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-role")));
          return roles.length === 3 && roles.every((r) => r === "follower" || r === "leader");
        }, patient)
        .toBe(true);
      expect(await d.text("bank-bad-audits")).toBe("0");
    }, 900_000);
  },
);
