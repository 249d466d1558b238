import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SingleNodeLog } from "@quorum/consensus/testing";
import { type KvServer, type KvServiceOptions, startKvService } from "../server/kv-server.js";
import { type ApplyResult, KvStore } from "../store/kv-store.js";

export interface SingleNodeKv {
  readonly store: KvStore;
  readonly log: SingleNodeLog<ApplyResult>;
  readonly server: KvServer;
  /** `127.0.0.1:port`, for etcdctl's --endpoints and the etcd3 client. */
  readonly endpoint: string;
  readonly dataDir: string;
  /** Stops the server, the log and the store, and removes the data directory. */
  stop(): Promise<void>;
}

/** Service options a test may set (clock, lease and watch tuning, limits). */
export type SingleNodeKvOptions = Partial<
  Omit<KvServiceOptions, "log" | "store" | "listen" | "leaderClientAddress">
>;

/** A one-node store on SingleNodeLog behind a real gRPC server on 127.0.0.1 (a free port). */
export async function startSingleNodeKv(options: SingleNodeKvOptions = {}): Promise<SingleNodeKv> {
  const dataDir = mkdtempSync(join(tmpdir(), "quorum-kv-"));
  const store = KvStore.open({ path: join(dataDir, "kv.db") });
  const log = new SingleNodeLog<ApplyResult>("n1", store);
  await log.start();
  const server = await startKvService({
    log,
    store,
    listen: "127.0.0.1:0",
    leaderClientAddress: () => endpoint,
    atomicProposeBatch: true, // SingleNodeLog applies a batch in one transaction
    ...options,
  });
  const endpoint = server.address;
  return {
    store,
    log,
    server,
    endpoint,
    dataDir,
    async stop() {
      await server.close(100);
      await log.close();
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
