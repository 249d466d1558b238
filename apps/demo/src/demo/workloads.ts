import type { Etcd3 } from "etcd3";
import { shardPrefixes } from "./shard-keys.js";
import { LatencyWindow, sleep } from "./stats.js";

export interface KvWorkloadStats {
  puts: number;
  reads: number;
  errors: number;
  /** Linearizable reads that did not return this writer's last acknowledged value: must stay 0. */
  staleReads: number;
  lastError: string | undefined;
}

/**
 * Puts and linearizable reads through the etcd API. Each writer owns its keys and reads a
 * key right after its put was acknowledged, so the read must return that value: a
 * different one is a stale read (a linearizability violation), counted and shown. One
 * writer per shard (at least two), each under its shard's prefix ("/demo/", "Demo/", "demo/").
 */
export class KvWorkload {
  readonly latency = new LatencyWindow();
  readonly stats: KvWorkloadStats = { puts: 0, reads: 0, errors: 0, staleReads: 0, lastError: undefined };
  private running = false;
  private loops: Promise<void>[] = [];

  private readonly prefixes: string[];

  constructor(
    private readonly client: Etcd3,
    shards: number,
    private readonly pauseMs = 10,
  ) {
    this.prefixes = shardPrefixes(shards, "demo");
  }

  start(): void {
    this.running = true;
    const writers = Math.max(2, this.prefixes.length);
    this.loops = Array.from({ length: writers }, (_, w) => this.loop(w));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async loop(writer: number): Promise<void> {
    for (let i = 0; this.running; i++) {
      const key = `${this.prefixes[writer % this.prefixes.length]}writer-${writer}/key-${i % 32}`;
      const value = `${Date.now()}-${i}`;
      try {
        let t0 = performance.now();
        await this.client.put(key).value(value);
        this.latency.record(performance.now() - t0);
        this.stats.puts++;
        t0 = performance.now();
        const read = await this.client.get(key).string();
        this.latency.record(performance.now() - t0);
        this.stats.reads++;
        if (read !== value) this.stats.staleReads++;
      } catch (err) {
        this.stats.errors++;
        this.stats.lastError = oneLine(err);
        await sleep(200);
      }
      await sleep(this.pauseMs);
    }
  }
}

export function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 200);
}
