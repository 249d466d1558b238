import { randomInt } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import type { ReplicatedLog } from "@quorum/consensus";
import { type ApplyResult, KvStore, startKvService, startShardedKvService } from "@quorum/kv";
import { PaxosNode, SqliteAcceptorStore } from "@quorum/paxos";
import { RaftNode, SqliteLogStore } from "@quorum/raft";
import { FaultyTransport, GrpcTransport, seededRandom, systemClock, type Transport } from "@quorum/transport";
import { ShardTxnEngine } from "@quorum/txn";
import { type Logger, pino } from "pino";
import { Registry } from "prom-client";
import type { NodeConfig } from "./config.js";
import { CountingTransport } from "./counting-transport.js";
import { checkDataDir } from "./data-dir.js";
import { MemberDirectory } from "./member-directory.js";

export interface RunningNode {
  readonly clientAddress: string;
  readonly peerAddress: string;
  readonly metricsAddress: string | undefined;
  /** Stops serving clients, then consensus, then closes the files. */
  stop(): Promise<void>;
}

/**
 * One Quorum node: the gRPC transport to its peers, one consensus group per shard whose log
 * and state machine (the kv store) live in SQLite files under the data dir, and etcd's API for
 * clients, routed by key to the shards.
 */
export async function startNode(config: NodeConfig): Promise<RunningNode> {
  const logger = pino({ level: config.logLevel, base: { node: config.name } }, pino.destination(2));
  mkdirSync(config.dataDir, { recursive: true });
  checkDataDir(config);
  const metrics = new Registry();

  const transport = new GrpcTransport({
    nodeId: config.name,
    // Nodes that disagree on the shard count must not talk: the id makes the transport refuse.
    clusterId: `${config.clusterToken}/shards=${config.shards}`,
    listen: config.listenPeer,
    peers: config.initialCluster.filter((p) => p.id !== config.name),
    logger,
    ...(config.peerTls ? { tls: config.peerTls } : {}),
  });
  const peerAddress = await transport.start();
  // Consensus and the directory talk through these wrappers: per-peer counters for the
  // dashboard and, with --enable-fault-injection, partitions the demo's buttons make.
  const counting = new CountingTransport(transport);
  const faulty = config.enableFaultInjection ? new FaultyTransport(counting, { logger }) : undefined;
  const wire: Transport = faulty ?? counting;

  // Election jitter needs no reproducibility in production, but the seed is logged so a
  // surprising run can be replayed in the simulator.
  const seed = randomInt(2 ** 31);
  const random = seededRandom(seed);
  // One consensus group and one store per shard; a single shard keeps the plain file names.
  const groups = Array.from({ length: config.shards }, (_, i) => {
    const suffix = config.shards === 1 ? "" : `-${i}`;
    const store = KvStore.open({ path: join(config.dataDir, `kv${suffix}.db`), logger });
    const parts = {
      id: config.name,
      peers: config.initialCluster,
      transport: wire,
      clock: systemClock,
      stateMachine: store,
      random,
    };
    // Only shard 0's Raft metrics are exported: they share names, and a registry takes a name once.
    const consensus = openConsensus(config, parts, suffix, logger, i === 0 ? metrics : new Registry());
    return { store, log: consensus.log, closeStorage: consensus.closeStorage };
  });
  await Promise.all(groups.map((g) => g.log.start()));
  const { log, store } = groups[0]!;

  const directory = new MemberDirectory(wire, systemClock, config.advertiseClient);
  const serviceOptions = {
    listen: config.listenClient,
    leaderClientAddress: (id: string) => directory.clientAddress(id),
    logger,
    metrics,
    ...(config.clientTls ? { tls: config.clientTls } : {}),
  };
  const kv =
    config.shards === 1
      ? await startKvService({ log, store, ...serviceOptions })
      : await startShardedKvService({
          shards: groups,
          ...serviceOptions,
          // A Txn over several shards runs as a two-phase commit through the shards' logs.
          crossShardTxn: (access) => new ShardTxnEngine(access, { logger, metrics }),
          // Elections tend to put every shard's leader on one node; spread them.
          balanceLeadersIntervalMs: 2_000,
        });

  let metricsServer: Server | undefined;
  let metricsAddress: string | undefined;
  if (config.listenMetrics) {
    const status = () => ({
      name: config.name,
      pid: process.pid,
      consensus: config.consensus,
      ...log.status(),
      kvRevision: store.revision(),
      shards: groups.map((g, shard) => ({ shard, ...g.log.status(), kvRevision: g.store.revision() })),
      transport: transport.stats(),
      peers: transport.peerStatus(),
      links: counting.links(),
      faults: faulty ? { ...faulty.faultStats(), cutOff: cutOff(faulty, config) } : undefined,
    });
    metricsServer = await serveHttp(config.listenMetrics, metrics, {
      healthy: () => log.status().leaderId !== undefined,
      status,
      faulty,
    });
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
      await Promise.all(groups.map((g) => g.log.close()));
      await wire.close();
      for (const g of groups) {
        g.store.close();
        g.closeStorage();
      }
      metricsServer?.close();
      logger.info("node stopped");
      logger.flush();
    },
  };
}

interface ConsensusParts {
  id: string;
  peers: NodeConfig["initialCluster"];
  transport: Transport;
  clock: typeof systemClock;
  stateMachine: KvStore;
  random: () => number;
}

/** The node's ReplicatedLog: Raft or Multi-Paxos over the same transport and store. */
function openConsensus(
  config: NodeConfig,
  parts: ConsensusParts,
  suffix: string,
  logger: Logger,
  metrics: Registry,
): { log: ReplicatedLog<ApplyResult>; closeStorage(): void } {
  if (config.consensus === "paxos") {
    const storage = new SqliteAcceptorStore(join(config.dataDir, `paxos${suffix}.db`));
    const self = config.initialCluster.find((p) => p.id === config.name)!;
    // The node closes its acceptor store itself on close().
    return {
      log: new PaxosNode({
        ...parts,
        address: self.address,
        storage,
        logger,
        metrics,
        channel: `paxos${suffix}`,
      }),
      closeStorage: () => {},
    };
  }
  const storage = new SqliteLogStore({ path: join(config.dataDir, `raft${suffix}.db`) });
  return {
    log: new RaftNode({ ...parts, storage, logger, metrics, channel: `raft${suffix}` }),
    closeStorage: () => storage.close(),
  };
}

/** The peers this node is cut off from by the demo's partition button. */
function cutOff(faulty: FaultyTransport, config: NodeConfig): string[] {
  return config.initialCluster
    .map((p) => p.id)
    .filter((id) => id !== config.name && !faulty.canReach(config.name, id));
}

interface HttpHandlers {
  healthy(): boolean;
  status(): unknown;
  /** Present only with --enable-fault-injection. */
  faulty: FaultyTransport | undefined;
}

function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
      if (body.length > limit) {
        reject(new Error("request body too large"));
        req.destroy();
      }
    });
    req.on("end", () => resolve(body));
    req.on("error", reject);
  });
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
}

/**
 * `/metrics` for Prometheus, `/health` for load balancers and orchestrators (200 while this
 * node knows a leader, so it can serve linearizable requests; 503 otherwise, with etcd's
 * `{"health":"true"|"false"}` body), `/status` (JSON: role, term, indexes, transport) for
 * the dashboard, and with fault injection enabled `POST /admin/partition` (body
 * `{"peers":["n2"]}`: drop all traffic with those peers, both ways) and `POST /admin/heal`.
 */
function serveHttp(address: string, registry: Registry, handlers: HttpHandlers): Promise<Server> {
  const colon = address.lastIndexOf(":");
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/health") {
      const ok = handlers.healthy();
      json(res, ok ? 200 : 503, ok ? { health: "true" } : { health: "false", reason: "no leader" });
      return;
    }
    if (path === "/status") {
      json(res, 200, handlers.status());
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`),
      );
      return;
    }
    const faulty = handlers.faulty;
    if (faulty && (path === "/admin/partition" || path === "/admin/heal")) {
      if (req.method !== "POST") {
        json(res, 405, { error: `${path} takes POST` });
        return;
      }
      if (path === "/admin/heal") {
        faulty.heal();
        json(res, 200, { healed: true });
        return;
      }
      readBody(req).then(
        (body) => {
          let peers: unknown;
          try {
            peers = (JSON.parse(body || "{}") as { peers?: unknown }).peers;
          } catch {
            json(res, 400, { error: 'the body is not JSON; send {"peers":["n2",...]}' });
            return;
          }
          if (!Array.isArray(peers) || !peers.every((p) => typeof p === "string")) {
            json(res, 400, { error: 'send {"peers":["n2",...]}: the peers to cut this node off from' });
            return;
          }
          for (const peer of peers as string[]) {
            faulty.blockLink(faulty.localId, peer);
            faulty.blockLink(peer, faulty.localId);
          }
          json(res, 200, { cutOff: peers });
        },
        (err: Error) => json(res, 400, { error: err.message }),
      );
      return;
    }
    res.writeHead(404).end("not found; try /metrics, /health or /status\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve(server));
  });
}
