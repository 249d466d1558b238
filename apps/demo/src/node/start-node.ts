import { randomInt } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import type { ReplicatedLog } from "@quorum/consensus";
import { type ApplyResult, KvStore, startKvService } from "@quorum/kv";
import { PaxosNode, SqliteAcceptorStore } from "@quorum/paxos";
import { RaftNode, SqliteLogStore } from "@quorum/raft";
import { GrpcTransport, seededRandom, systemClock } from "@quorum/transport";
import { type Logger, pino } from "pino";
import { Registry } from "prom-client";
import type { NodeConfig } from "./config.js";
import { MemberDirectory } from "./member-directory.js";

export interface RunningNode {
  readonly clientAddress: string;
  readonly peerAddress: string;
  readonly metricsAddress: string | undefined;
  /** Stops serving clients, then consensus, then closes the files. */
  stop(): Promise<void>;
}

/**
 * One Quorum node: the gRPC transport to its peers, a Raft group whose log and state machine
 * (the kv store) live in SQLite files under the data dir, and etcd's API for clients.
 */
export async function startNode(config: NodeConfig): Promise<RunningNode> {
  const logger = pino({ level: config.logLevel, base: { node: config.name } }, pino.destination(2));
  mkdirSync(config.dataDir, { recursive: true });
  const metrics = new Registry();

  const transport = new GrpcTransport({
    nodeId: config.name,
    clusterId: config.clusterToken,
    listen: config.listenPeer,
    peers: config.initialCluster.filter((p) => p.id !== config.name),
    logger,
  });
  const peerAddress = await transport.start();

  const store = KvStore.open({ path: join(config.dataDir, "kv.db"), logger });
  // Election jitter needs no reproducibility in production, but the seed is logged so a
  // surprising run can be replayed in the simulator.
  const seed = randomInt(2 ** 31);
  const common = {
    id: config.name,
    peers: config.initialCluster,
    transport,
    clock: systemClock,
    stateMachine: store,
    random: seededRandom(seed),
  };
  const consensus = openConsensus(config, common, logger, metrics);
  const log = consensus.log;
  await log.start();

  const directory = new MemberDirectory(transport, systemClock, config.listenClient);
  const kv = await startKvService({
    log,
    store,
    listen: config.listenClient,
    leaderClientAddress: (id) => directory.clientAddress(id),
    logger,
    metrics,
  });

  let metricsServer: Server | undefined;
  let metricsAddress: string | undefined;
  if (config.listenMetrics) {
    metricsServer = await serveHttp(config.listenMetrics, metrics, () => log.status().leaderId !== undefined);
    metricsAddress = config.listenMetrics;
  }
  logger.info({ client: kv.address, peer: peerAddress, metrics: metricsAddress, seed }, "node started");

  return {
    clientAddress: kv.address,
    peerAddress,
    metricsAddress,
    async stop() {
      await kv.close(1000);
      directory.close();
      await log.close();
      await transport.close();
      store.close();
      consensus.closeStorage();
      metricsServer?.close();
      logger.info("node stopped");
      logger.flush();
    },
  };
}

interface ConsensusParts {
  id: string;
  peers: NodeConfig["initialCluster"];
  transport: GrpcTransport;
  clock: typeof systemClock;
  stateMachine: KvStore;
  random: () => number;
}

/** The node's ReplicatedLog: Raft or Multi-Paxos over the same transport and store. */
function openConsensus(
  config: NodeConfig,
  parts: ConsensusParts,
  logger: Logger,
  metrics: Registry,
): { log: ReplicatedLog<ApplyResult>; closeStorage(): void } {
  if (config.consensus === "paxos") {
    const storage = new SqliteAcceptorStore(join(config.dataDir, "paxos.db"));
    const self = config.initialCluster.find((p) => p.id === config.name)!;
    // The node closes its acceptor store itself on close().
    return {
      log: new PaxosNode({ ...parts, address: self.address, storage, logger, metrics }),
      closeStorage: () => {},
    };
  }
  const storage = new SqliteLogStore({ path: join(config.dataDir, "raft.db") });
  return {
    log: new RaftNode({ ...parts, storage, logger, metrics }),
    closeStorage: () => storage.close(),
  };
}

/**
 * `/metrics` for Prometheus and `/health` for load balancers and orchestrators: 200 while
 * this node knows a leader (it can serve linearizable requests), 503 otherwise, with etcd's
 * `{"health":"true"|"false"}` body.
 */
function serveHttp(address: string, registry: Registry, healthy: () => boolean): Promise<Server> {
  const colon = address.lastIndexOf(":");
  const server = createServer((req, res) => {
    if (req.url === "/health") {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify(ok ? { health: "true" } : { health: "false", reason: "no leader" }));
      return;
    }
    if (req.url !== "/metrics") {
      res.writeHead(404).end("not found; try /metrics or /health\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve(server));
  });
}
