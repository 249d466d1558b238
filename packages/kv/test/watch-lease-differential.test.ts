import { type ClientDuplexStream, credentials, type ServiceError } from "@grpc/grpc-js";
import { type SingleNodeKv, startSingleNodeKv } from "@quorum/kv/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DeleteRangeRequest,
  WatchCreateRequest_FilterType as Filter,
  KVClient,
  LeaseClient,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  PutRequest,
  RequestOp,
  TxnRequest,
  WatchClient,
  WatchCreateRequest,
  type WatchRequest,
  type WatchResponse,
} from "../src/gen/etcdserverpb/rpc.js";
import { findBinary } from "./etcdctl.js";
import { type EtcdServer, normalize, startEtcd } from "./helpers/etcd-server.js";

/**
 * Watch and Lease, side by side with a real etcd (Debian's etcd-server, started here): the
 * same script of writes, watch requests and lease calls against both, and the responses
 * compared step by step. Registered only when the `etcd` binary exists.
 */
const etcdBinary = findBinary("etcd");

interface Target {
  kv: InstanceType<typeof KVClient>;
  lease: InstanceType<typeof LeaseClient>;
  watch: ClientDuplexStream<WatchRequest, WatchResponse>;
  keepAlive: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>;
  received: unknown[];
  close(): void;
}

function connect(address: string): Target {
  const kv = new KVClient(address, credentials.createInsecure());
  const lease = new LeaseClient(address, credentials.createInsecure());
  const watchClient = new WatchClient(address, credentials.createInsecure());
  const received: unknown[] = [];
  const watch = watchClient.watch();
  watch.on("data", (r: WatchResponse) => received.push({ watch: normalize(r) }));
  watch.on("error", () => {});
  const keepAlive = lease.leaseKeepAlive();
  keepAlive.on("data", (r: LeaseKeepAliveResponse) => received.push({ keepAlive: normalize(r) }));
  keepAlive.on("error", () => {});
  return {
    kv,
    lease,
    watch,
    keepAlive,
    received,
    close() {
      watch.cancel();
      keepAlive.cancel();
      kv.close();
      lease.close();
      watchClient.close();
    },
  };
}

function unary(client: object, method: string, req: unknown): Promise<unknown> {
  return new Promise((resolve) => {
    // biome-ignore lint/suspicious/noExplicitAny: the method is chosen by name
    (client as any)[method](req, { deadline: Date.now() + 5_000 }, (err: ServiceError | null, res: unknown) =>
      resolve(err ? { error: { code: err.code, details: err.details } } : normalize(res)),
    );
  });
}

const b = (s: string) => Buffer.from(s);
type Step = { name: string; run: (t: Target) => Promise<unknown> | undefined };
const put = (key: string, value: string, lease = 0n): Step => ({
  name: `put ${key}=${value}`,
  run: (t) => unary(t.kv, "put", PutRequest.fromPartial({ key: b(key), value: b(value), lease })),
});
const watch = (name: string, req: Partial<WatchCreateRequest>): Step => ({
  name,
  run: (t) => {
    t.watch.write({ createRequest: WatchCreateRequest.fromPartial(req) });
    return undefined;
  },
});
const send = (name: string, req: WatchRequest): Step => ({
  name,
  run: (t) => {
    t.watch.write(req);
    return undefined;
  },
});
const lease = (name: string, method: string, req: unknown): Step => ({
  name,
  run: (t) => unary(t.lease, method, req),
});

const steps: Step[] = [
  put("a", "1"),
  watch("watch a", { key: b("a") }),
  watch("watch prefix p/ with prev kv", { key: b("p/"), rangeEnd: b("p0"), prevKv: true }),
  watch("watch b, id 5, no put", { key: b("b"), watchId: 5n, filters: [Filter.NOPUT] }),
  watch("duplicate id 5", { key: b("c"), watchId: 5n }),
  watch("empty range", { key: b("z"), rangeEnd: b("a") }),
  put("a", "2"),
  put("p/x", "1"),
  put("p/x", "2"),
  {
    name: "txn: put p/y, delete p/x",
    run: (t) =>
      unary(
        t.kv,
        "txn",
        TxnRequest.fromPartial({
          success: [
            RequestOp.fromPartial({ requestPut: { key: b("p/y"), value: b("y") } }),
            RequestOp.fromPartial({ requestDeleteRange: { key: b("p/x") } }),
          ],
        }),
      ),
  },
  put("b", "1"),
  {
    name: "delete b",
    run: (t) => unary(t.kv, "deleteRange", DeleteRangeRequest.fromPartial({ key: b("b") })),
  },
  send("progress request", { progressRequest: {} }),
  send("cancel 1", { cancelRequest: { watchId: 1n } }),
  send("cancel unknown", { cancelRequest: { watchId: 99n } }),
  put("p/z", "after cancel"),
  watch("watch everything from revision 2", {
    key: Buffer.from([0]),
    rangeEnd: Buffer.from([0]),
    startRevision: 2n,
  }),
  watch("watch a from the future", { key: b("a"), startRevision: 12n }),
  put("a", "3"),
  put("a", "4"),
  { name: "compact 9", run: (t) => unary(t.kv, "compact", { revision: 9n, physical: true }) },
  watch("watch a from compacted 3", { key: b("a"), startRevision: 3n }),
  watch("watch a from compaction 9", { key: b("a"), startRevision: 9n }),
  lease("grant id 1000 ttl 100", "leaseGrant", { ID: 1000n, TTL: 100n }),
  lease("grant id 1001 ttl 1 (raised to min)", "leaseGrant", { ID: 1001n, TTL: 1n }),
  lease("revoke 1001 before it could expire", "leaseRevoke", { ID: 1001n }),
  lease("grant existing", "leaseGrant", { ID: 1000n, TTL: 5n }),
  lease("grant too large", "leaseGrant", { ID: 1002n, TTL: 9_000_000_001n }),
  put("l/1", "v", 1000n),
  put("l/2", "v", 1000n),
  put("l/3", "v", 999n),
  {
    name: "time to live with keys",
    run: async (t) => {
      // etcd lists attached keys in map order.
      const r = (await unary(t.lease, "leaseTimeToLive", { ID: 1000n, keys: true })) as { keys?: string[] };
      r.keys?.sort();
      return r;
    },
  },
  lease("time to live unknown", "leaseTimeToLive", { ID: 999n, keys: true }),
  {
    name: "keep alive known and unknown",
    run: (t) => {
      t.keepAlive.write({ ID: 1000n });
      t.keepAlive.write({ ID: 999n });
      return undefined;
    },
  },
  lease("list", "leaseLeases", {}),
  watch("watch l/", { key: b("l/"), rangeEnd: b("l0") }),
  lease("revoke 1000", "leaseRevoke", { ID: 1000n }),
  lease("revoke 1000 again", "leaseRevoke", { ID: 1000n }),
  lease("list after revoke", "leaseLeases", {}),
  put("l/4", "v", 1000n),
];

if (!etcdBinary) {
  console.warn(
    "watch-lease-differential: `etcd` not found on PATH (apt-get install -y etcd-server); differential test not registered",
  );
} else {
  describe("differential: Watch and Lease, Quorum vs a real etcd", () => {
    let etcd: EtcdServer | undefined;
    let kv: SingleNodeKv;
    let etcdTarget: Target;
    let quorumTarget: Target;

    beforeAll(async () => {
      etcd = await startEtcd(etcdBinary, "etcd-diff-watch-");
      kv = await startSingleNodeKv();
      etcdTarget = connect(etcd.endpoint);
      quorumTarget = connect(kv.endpoint);
    }, 30_000);

    afterAll(async () => {
      etcdTarget?.close();
      quorumTarget?.close();
      await etcd?.stop();
      await kv?.stop();
    });

    async function runStep(t: Target, step: Step): Promise<unknown> {
      const before = t.received.length;
      const result = await step.run(t);
      // Let stream replies arrive (a watch response may trail the write's reply): wait until
      // nothing new came for 120 ms.
      let seen = -1;
      while (seen !== t.received.length) {
        seen = t.received.length;
        await new Promise((r) => setTimeout(r, 120));
      }
      // etcd notifies watchers in map order: compare each watcher's own sequence.
      const watchId = (x: unknown) => Number((x as { watch?: { watchId: string } }).watch?.watchId ?? -2);
      const streamed = t.received.slice(before).sort((x, y) => watchId(x) - watchId(y));
      return result === undefined ? { streamed } : { result, streamed };
    }

    it("gives the same responses, step by step", async () => {
      const mismatches: string[] = [];
      for (const step of steps) {
        const expected = await runStep(etcdTarget, step);
        const actual = await runStep(quorumTarget, step);
        try {
          expect(actual).toEqual(expected);
        } catch {
          mismatches.push(
            `${step.name}:\n  etcd:   ${JSON.stringify(expected).slice(0, 900)}\n  quorum: ${JSON.stringify(actual).slice(0, 900)}`,
          );
        }
      }
      expect(mismatches.join("\n")).toBe("");
    }, 60_000);
  });
}
