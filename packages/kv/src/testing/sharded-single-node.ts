import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SingleNodeLog } from "@quorum/consensus/testing";
import type { KvServer } from "../server/kv-server.js";
import { type ShardedKvServiceOptions, startShardedKvService } from "../shard/router.js";
import { type ApplyResult, KvStore } from "../store/kv-store.js";

export interface ShardedSingleNodeKv {
  readonly shards: { readonly store: KvStore; readonly log: SingleNodeLog<ApplyResult> }[];
  readonly server: KvServer;
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** N shards, each a SingleNodeLog + KvStore, behind one sharded etcd endpoint on 127.0.0.1. */
export async function startShardedSingleNodeKv(
  n: number,
  options: Partial<Omit<ShardedKvServiceOptions, "shards" | "listen" | "leaderClientAddress">> = {},
): Promise<ShardedSingleNodeKv> {
  const dataDir = mkdtempSync(join(tmpdir(), "quorum-kv-shards-"));
  const shards: ShardedSingleNodeKv["shards"] = [];
  for (let i = 0; i < n; i++) {
    const store = KvStore.open({ path: join(dataDir, `shard-${i}.db`) });
    const log = new SingleNodeLog<ApplyResult>("n1", store);
    await log.start();
    shards.push({ store, log });
  }
  const server = await startShardedKvService({
    shards,
    listen: "127.0.0.1:0",
    leaderClientAddress: () => endpoint,
    atomicProposeBatch: true, // SingleNodeLog applies a batch in one transaction
    ...options,
  });
  const endpoint = server.address;
  return {
    shards,
    server,
    endpoint,
    async stop() {
      await server.close(100);
      for (const s of shards) await s.log.close();
      for (const s of shards) s.store.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
