import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ClientDuplexStream, credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type { LogEvent, LogStatus, ReplicatedLog } from "@quorum/consensus";
import { SingleNodeLog } from "@quorum/consensus/testing";
import { type ApplyResult, type KvServer, KvStore, startKvService } from "@quorum/kv";
import { ManualClock } from "@quorum/kv/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  KVClient,
  LeaseClient,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  PutRequest,
  WatchClient,
  WatchCreateRequest,
  type WatchRequest,
} from "../src/gen/etcdserverpb/rpc.js";
import { prefixEnd } from "../src/store/keys.js";

/** A one-node log whose leader the test can take away (and give back). */
class LosableLog implements ReplicatedLog<ApplyResult> {
  private lost = false;
  private readonly listeners = new Set<(e: LogEvent) => void>();
  constructor(readonly inner: SingleNodeLog<ApplyResult>) {}
  get nodeId() {
    return this.inner.nodeId;
  }
  start = () => this.inner.start();
  propose: ReplicatedLog<ApplyResult>["propose"] = (c) => this.inner.propose(c);
  proposeBatch: NonNullable<ReplicatedLog<ApplyResult>["proposeBatch"]> = (c) => this.inner.proposeBatch(c);
  read: ReplicatedLog<ApplyResult>["read"] = () => this.inner.read();
  changeMembership: ReplicatedLog<ApplyResult>["changeMembership"] = (c) => this.inner.changeMembership(c);
  close = () => this.inner.close();
  status(): LogStatus {
    const s = this.inner.status();
    return this.lost ? { ...s, role: "follower", leaderId: undefined } : s;
  }
  subscribe(listener: (e: LogEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  setLost(lost: boolean): void {
    this.lost = lost;
    for (const l of this.listeners)
      l({ type: "leaderChanged", leaderId: lost ? undefined : this.nodeId, term: 1 });
  }
}

const hasLeader = () => {
  const m = new Metadata();
  m.set("hasleader", "true");
  return m;
};

function collect<Req, Res>(stream: ClientDuplexStream<Req, Res>) {
  const out = { data: [] as Res[], error: undefined as ServiceError | undefined, ended: false };
  stream.on("data", (r: Res) => out.data.push(r));
  stream.on("error", (e: ServiceError) => (out.error = e));
  stream.on("end", () => (out.ended = true));
  return out;
}

async function until(predicate: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("Watch and KeepAlive streams over gRPC", () => {
  let dir: string;
  let store: KvStore;
  let log: LosableLog;
  let server: KvServer;
  let clock: ManualClock;
  let watchClient: InstanceType<typeof WatchClient>;
  let leaseClient: InstanceType<typeof LeaseClient>;
  let kvClient: InstanceType<typeof KVClient>;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "quorum-watch-grpc-"));
    store = KvStore.open({ path: join(dir, "kv.db") });
    log = new LosableLog(new SingleNodeLog("n1", store));
    await log.start();
    clock = new ManualClock();
    server = await startKvService({
      log,
      store,
      listen: "127.0.0.1:0",
      clock,
      noLeaderStreamTimeoutMs: 3000,
      watchMaxPendingResponses: 64,
    });
    watchClient = new WatchClient(server.address, credentials.createInsecure());
    leaseClient = new LeaseClient(server.address, credentials.createInsecure());
    kvClient = new KVClient(server.address, credentials.createInsecure());
  });
  afterEach(async () => {
    watchClient.close();
    leaseClient.close();
    kvClient.close();
    await server.close(100);
    await log.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const put = (key: string, value: string) =>
    new Promise<void>((resolve, reject) =>
      kvClient.put(PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  const create = (req: Partial<WatchCreateRequest>): WatchRequest => ({
    createRequest: WatchCreateRequest.fromPartial(req),
  });

  it("ends a hasleader stream with `no leader` when there is none, at once or after the leader is lost", async () => {
    log.setLost(true);
    const refused = collect(watchClient.watch(hasLeader()));
    await until(() => refused.error !== undefined);
    expect([refused.error!.code, refused.error!.details]).toEqual([
      status.UNAVAILABLE,
      "etcdserver: no leader",
    ]);
    // Without hasleader the stream is served from local state anyway (etcd3 sends no metadata).
    const plain = watchClient.watch();
    const served = collect(plain);
    plain.write(create({ key: Buffer.from("a") }));
    await until(() => served.data.length === 1);
    log.setLost(false);

    const stream = watchClient.watch(hasLeader());
    const live = collect(stream);
    stream.write(create({ key: Buffer.from("a") }));
    await until(() => live.data.length === 1);
    log.setLost(true);
    clock.advance(2_900);
    await new Promise((r) => setTimeout(r, 50));
    expect(live.error).toBeUndefined();
    clock.advance(100);
    await until(() => live.error !== undefined);
    expect(live.error!.details).toBe("etcdserver: no leader");
    expect(served.error).toBeUndefined();
    plain.cancel();
  });

  it("serves many watches on one stream and answers keep-alives one per request, in order", async () => {
    const stream = watchClient.watch();
    const got = collect(stream);
    for (const k of ["a", "b", "c"]) stream.write(create({ key: Buffer.from(k) }));
    await until(() => got.data.length === 3);
    expect(got.data.map((r) => r.watchId)).toEqual([0n, 1n, 2n]);
    await put("b", "1");
    await put("c", "1");
    await until(() => got.data.length === 5);
    expect(got.data.slice(3).map((r) => r.watchId)).toEqual([1n, 2n]);
    stream.end();
    await until(() => got.ended);

    const grant = await new Promise<{ ID: bigint }>((resolve, reject) =>
      leaseClient.leaseGrant({ ID: 0n, TTL: 30n }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const ka: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> =
      leaseClient.leaseKeepAlive();
    const replies = collect(ka);
    for (const ID of [grant.ID, 5n, grant.ID]) ka.write({ ID });
    await until(() => replies.data.length === 3);
    expect(replies.data.map((r) => [r.ID, r.TTL])).toEqual([
      [grant.ID, 30n],
      [5n, 0n],
      [grant.ID, 30n],
    ]);
    ka.end();
    await until(() => replies.ended);
  });

  it("a client that stops reading does not hold writers; when it reads again it gets every event once, in order", async () => {
    const stream = watchClient.watch();
    const got = collect(stream);
    stream.write(create({ key: Buffer.from("s/"), rangeEnd: prefixEnd(Buffer.from("s/")) }));
    await until(() => got.data.length === 1);
    stream.pause();
    const value = "x".repeat(2_000);
    const t0 = Date.now();
    for (let i = 0; i < 1_500; i++) await put(`s/${i % 10}`, value);
    const writeMs = Date.now() - t0;
    expect(writeMs).toBeLessThan(20_000);
    // The watcher fell back to history at least once (etcd's unsynced watchers).
    const unsynced = (await server.metrics.getSingleMetric("quorum_kv_watch_unsynced_total")?.get())
      ?.values[0]?.value;
    expect(unsynced).toBeGreaterThan(0);
    stream.resume();
    const events = () => got.data.flatMap((r) => r.events.map((e) => Number(e.kv!.modRevision)));
    await until(() => events().length === 1_500, 15_000);
    expect(events()).toEqual(Array.from({ length: 1_500 }, (_, i) => i + 2));
    stream.cancel();
  }, 30_000);

  it("ends open streams with `server stopped` when the server closes", async () => {
    const stream = watchClient.watch();
    const got = collect(stream);
    stream.write(create({ key: Buffer.from("a") }));
    await until(() => got.data.length === 1);
    // A grace longer than the test's timeout: had shutdown waited it out on this stream
    // instead of ending it, the test would time out.
    const closing = server.close(60_000);
    await until(() => got.error !== undefined);
    expect([got.error!.code, got.error!.details]).toEqual([status.UNAVAILABLE, "etcdserver: server stopped"]);
    await closing;
    expect(server.watchStreams()).toBe(0);
  });
});
