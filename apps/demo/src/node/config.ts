import { loadTlsCredentials, type PeerInfo, type TlsOptions } from "@quorum/transport";

/** Everything `quorum node` needs, validated. Flag names follow etcd's where etcd has one. */
export interface NodeConfig {
  readonly name: string;
  readonly dataDir: string;
  /** host:port for etcd clients. */
  readonly listenClient: string;
  /**
   * host:port that other nodes forward requests to and MemberList gives clients: where this
   * node's client port is reachable (`--advertise-client-urls`; default `listenClient`).
   */
  readonly advertiseClient: string;
  /** host:port for node-to-node traffic. */
  readonly listenPeer: string;
  /** Every voter of a new cluster, this node included. */
  readonly initialCluster: readonly PeerInfo[];
  /** Nodes of different clusters refuse each other's streams. */
  readonly clusterToken: string;
  readonly consensus: "raft" | "paxos";
  /** Key-space shards, each its own consensus group; every node of a cluster must agree. */
  readonly shards: number;
  /** Mutual TLS for etcd clients (and for forwarding to the leader); undefined = plaintext. */
  readonly clientTls: TlsOptions | undefined;
  /** Mutual TLS between nodes; undefined = plaintext. */
  readonly peerTls: TlsOptions | undefined;
  /** host:port for Prometheus `/metrics`; undefined = no metrics server. */
  readonly listenMetrics: string | undefined;
  readonly logLevel: string;
  /** Serve POST /admin/partition and /admin/heal on the metrics address (the demo's buttons). */
  readonly enableFaultInjection: boolean;
}

/** A flag value a person got wrong; the CLI prints the message and exits 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Accepts `host:port` or `http://host:port` (etcd's URL form) and returns `host:port`. */
export function parseHostPort(flag: string, value: string): string {
  const bare = value.replace(/^https?:\/\//, "").replace(/\/$/, "");
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(bare);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port > 65535) {
    throw new ConfigError(`${flag}: "${value}" is not host:port (for example 127.0.0.1:2379)`);
  }
  return bare;
}

/** `--advertise-client-urls`: one address others can dial (a wildcard would send them home). */
function parseAdvertised(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.includes(",")) throw new ConfigError(`--advertise-client-urls: "${value}" must be one address`);
  const address = parseHostPort("--advertise-client-urls", value);
  if (/^(0\.0\.0\.0|\[::\]):/.test(address)) {
    throw new ConfigError(
      `--advertise-client-urls: "${value}" is a wildcard; give an address other nodes can dial`,
    );
  }
  return address;
}

/** Parses etcd's `--initial-cluster n1=http://127.0.0.1:2380,n2=...`. */
export function parseInitialCluster(value: string): PeerInfo[] {
  const peers: PeerInfo[] = [];
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--initial-cluster: "${part}" is not name=host:port`);
    const id = part.slice(0, eq).trim();
    if (!namePattern.test(id)) throw new ConfigError(`--initial-cluster: "${id}" is not a valid node name`);
    if (peers.some((p) => p.id === id))
      throw new ConfigError(`--initial-cluster: node "${id}" is listed twice`);
    peers.push({ id, address: parseHostPort("--initial-cluster", part.slice(eq + 1).trim()) });
  }
  return peers;
}

export interface NodeFlags {
  name: string;
  dataDir?: string;
  listenClient: string;
  advertiseClientUrls?: string;
  listenPeer: string;
  initialCluster?: string;
  initialClusterToken: string;
  consensus: string;
  shards?: number;
  certFile?: string;
  keyFile?: string;
  trustedCaFile?: string;
  peerCertFile?: string;
  peerKeyFile?: string;
  peerTrustedCaFile?: string;
  listenMetrics?: string;
  logLevel: string;
  enableFaultInjection?: boolean;
}

export function nodeConfigFromFlags(flags: NodeFlags): NodeConfig {
  if (!namePattern.test(flags.name)) {
    throw new ConfigError(`--name: "${flags.name}" must be 1-63 letters, digits, '.', '_' or '-'`);
  }
  const listenClient = parseHostPort("--listen-client", flags.listenClient);
  const advertiseClient = parseAdvertised(flags.advertiseClientUrls) ?? listenClient;
  const listenPeer = parseHostPort("--listen-peer", flags.listenPeer);
  const initialCluster = flags.initialCluster
    ? parseInitialCluster(flags.initialCluster)
    : [{ id: flags.name, address: listenPeer }];
  const self = initialCluster.find((p) => p.id === flags.name);
  if (!self) {
    throw new ConfigError(`--initial-cluster does not list this node ("${flags.name}")`);
  }
  if (flags.consensus !== "raft" && flags.consensus !== "paxos") {
    throw new ConfigError(`--consensus: "${flags.consensus}" is not one of raft, paxos`);
  }
  const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
  if (!levels.includes(flags.logLevel)) {
    throw new ConfigError(`--log-level: "${flags.logLevel}" is not one of ${levels.join(", ")}`);
  }
  return {
    name: flags.name,
    dataDir: flags.dataDir ?? `${flags.name}.quorum`,
    listenClient,
    advertiseClient,
    listenPeer,
    initialCluster,
    clusterToken: flags.initialClusterToken,
    consensus: flags.consensus,
    shards: checkShards(flags.shards ?? 1),
    clientTls: tlsFromFlags("", flags.certFile, flags.keyFile, flags.trustedCaFile),
    peerTls: tlsFromFlags("peer-", flags.peerCertFile, flags.peerKeyFile, flags.peerTrustedCaFile),
    listenMetrics: flags.listenMetrics ? parseHostPort("--listen-metrics", flags.listenMetrics) : undefined,
    logLevel: flags.logLevel,
    enableFaultInjection: flags.enableFaultInjection === true,
  };
}

const maxShards = 64;

function checkShards(shards: number): number {
  if (!Number.isInteger(shards) || shards < 1 || shards > maxShards) {
    throw new ConfigError(`--shards must be an integer from 1 to ${maxShards}`);
  }
  return shards;
}

/**
 * etcd's TLS flags: all three files of a group, or none. The files are read now, so a missing
 * or unreadable one is a one-line error at start-up rather than a failed handshake later.
 */
function tlsFromFlags(
  prefix: string,
  certFile: string | undefined,
  keyFile: string | undefined,
  caFile: string | undefined,
): TlsOptions | undefined {
  const given = [certFile, keyFile, caFile].filter((f) => f !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3) {
    throw new ConfigError(
      `--${prefix}cert-file, --${prefix}key-file and --${prefix}trusted-ca-file go together (mutual TLS)`,
    );
  }
  const tls = { certFile: certFile!, keyFile: keyFile!, caFile: caFile! };
  try {
    loadTlsCredentials(tls);
  } catch (err) {
    throw new ConfigError(`--${prefix}*: ${(err as Error).message}`);
  }
  return tls;
}
