import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { KVClient, RangeRequest } from "../../src/gen/etcdserverpb/rpc.js";
import { freePorts } from "./process-cluster.js";

/** A real one-member etcd (Debian's etcd-server) on 127.0.0.1, for the differential tests. */
export interface EtcdServer {
  /** `host:port` of its client API. */
  readonly endpoint: string;
  /** Kills it (SIGKILL) and removes its data dir. */
  stop(): Promise<void>;
}

/** Starts etcd from `binary` in a temp dir and waits until it answers a Range. */
export async function startEtcd(binary: string, prefix: string): Promise<EtcdServer> {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const [clientPort, peerPort] = await freePorts(2);
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const etcd = spawn(
    binary,
    [
      ...["--name", "diff", "--data-dir", join(dataDir, "etcd")],
      ...["--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl],
      ...["--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl],
      ...["--initial-cluster", `diff=${peerUrl}`],
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  etcd.stderr?.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const endpoint = `127.0.0.1:${clientPort}`;
  const stop = async () => {
    if (etcd.exitCode === null) {
      const exited = new Promise((res) => etcd.once("exit", res));
      etcd.kill("SIGKILL");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const probe = new KVClient(endpoint, credentials.createInsecure());
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const ready = await new Promise<boolean>((resolve) =>
        probe.range(
          RangeRequest.fromPartial({ key: Buffer.from("ready") }),
          new Metadata(),
          { deadline: Date.now() + 2_000 },
          (err: ServiceError | null) => resolve(!err),
        ),
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`etcd did not start:\n${log}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  } catch (err) {
    await stop();
    throw err;
  } finally {
    probe.close();
  }
  return { endpoint, stop };
}

/** Drops what legitimately differs between two clusters: IDs and terms. */
export function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (Buffer.isBuffer(value)) return value.toString("latin1");
  if (typeof value === "bigint") return value.toString();
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === "clusterId" || k === "memberId" || k === "raftTerm") continue;
      out[k] = normalize(v);
    }
    return out;
  }
  return value;
}
