import type { LogEvent, LogStatus, Role } from "@quorum/consensus";
import { SingleNodeLog } from "@quorum/consensus/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeCommand } from "../command.js";
import { type ApplyResult, KvStore } from "../store/kv-store.js";
import { ManualClock } from "../testing/manual-clock.js";
import { KvService } from "./kv-server.js";
import { Lessor } from "./lessor.js";

const b = (s: string) => Buffer.from(s);
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

describe("lease expiry through the service (one node, injected clock)", () => {
  let store: KvStore;
  let log: SingleNodeLog<ApplyResult>;
  let service: KvService;
  let clock: ManualClock;

  beforeEach(async () => {
    store = KvStore.open({ path: ":memory:" });
    log = new SingleNodeLog("n1", store);
    await log.start();
    clock = new ManualClock();
    service = new KvService({ log, store, clock, minLeaseTtlSeconds: 2 });
  });
  afterEach(async () => {
    service.close();
    await log.close();
    store.close();
  });

  it("expires a lease once, exactly when its TTL has passed on the leader's clock, deleting its keys at one revision", async () => {
    const { ID } = await service.leaseGrant({ ID: 0n, TTL: 5n });
    expect(ID > 0n).toBe(true);
    await service.put({
      key: b("a"),
      value: b("1"),
      lease: ID,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    });
    await service.put({
      key: b("b"),
      value: b("2"),
      lease: ID,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    });
    const changes: number[] = [];
    store.onChanges((c) => changes.push(...c.map((x) => x.revision)));
    clock.advance(4_999);
    await settle();
    expect(store.lease(ID)).toBeDefined();
    expect((await service.leaseTimeToLive({ ID, keys: true })).TTL).toBe(0n); // 1 ms left, truncated
    clock.advance(1);
    await settle();
    expect(store.lease(ID)).toBeUndefined();
    expect(store.range({ key: b("a"), rangeEnd: b("c") } as never).kvs).toEqual([]);
    expect(changes).toEqual([4]);
    clock.advance(60_000);
    await settle();
    expect(changes).toEqual([4]);
  });

  it("keeps a lease alive while keep-alives come, and reports the remaining TTL", async () => {
    const { ID } = await service.leaseGrant({ ID: 42n, TTL: 10n });
    for (let i = 0; i < 5; i++) {
      clock.advance(8_000);
      await settle();
      expect((await service.leaseKeepAliveOne({ ID })).TTL).toBe(10n);
    }
    clock.advance(3_500);
    expect(await service.leaseTimeToLive({ ID, keys: false })).toMatchObject({ TTL: 6n, grantedTTL: 10n });
    clock.advance(7_000);
    await settle();
    expect(store.lease(ID)).toBeUndefined();
    expect((await service.leaseKeepAliveOne({ ID })).TTL).toBe(0n);
    expect(await service.leaseTimeToLive({ ID, keys: false })).toMatchObject({ TTL: -1n, grantedTTL: 0n });
  });

  it("applies etcd's TTL and ID rules", async () => {
    expect((await service.leaseGrant({ ID: 0n, TTL: 0n })).TTL).toBe(2n);
    expect((await service.leaseGrant({ ID: 7n, TTL: -5n })).TTL).toBe(2n);
    await expect(service.leaseGrant({ ID: 7n, TTL: 5n })).rejects.toThrow("etcdserver: lease already exists");
    await expect(service.leaseGrant({ ID: 0n, TTL: 9_000_000_001n })).rejects.toThrow(
      "etcdserver: too large lease TTL",
    );
    expect((await service.leaseGrant({ ID: 0n, TTL: 9_000_000_000n })).TTL).toBe(9_000_000_000n);
    await expect(service.leaseRevoke({ ID: 8n })).rejects.toThrow("etcdserver: requested lease not found");
    expect(service.leaseLeases({}).leases.map((l) => l.ID)).toContain(7n);
  });
});

/** A log whose role the test sets, for leader changes. */
class RoleLog {
  role: Role = "leader";
  private readonly listeners = new Set<(e: LogEvent) => void>();
  status(): LogStatus {
    return {
      nodeId: "n1",
      role: this.role,
      leaderId: this.role === "leader" ? "n1" : "n2",
      term: 1,
      commitIndex: 0,
      appliedIndex: 0,
      members: [],
    };
  }
  subscribe(listener: (e: LogEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  set(role: Role): void {
    this.role = role;
    for (const l of this.listeners) l({ type: "roleChanged", role });
  }
}

describe("lessor across leader changes", () => {
  let store: KvStore;
  let log: SingleNodeLog<ApplyResult>;
  let clock: ManualClock;
  let roles: RoleLog;
  let lessor: Lessor;
  const revoked: bigint[] = [];

  beforeEach(async () => {
    store = KvStore.open({ path: ":memory:" });
    log = new SingleNodeLog("n1", store);
    await log.start();
    clock = new ManualClock();
    roles = new RoleLog();
    revoked.length = 0;
    lessor = new Lessor({
      log: roles,
      store,
      clock,
      leaderExtendMs: 1000,
      revoke: async (id) => {
        revoked.push(id);
        await log.propose(encodeCommand.leaseRevoke({ ID: id }));
      },
    });
    lessor.start();
  });
  afterEach(async () => {
    lessor.close();
    await log.close();
    store.close();
  });

  it("only the leader expires; a new leader restarts every lease at its full TTL plus the extension", async () => {
    await log.propose(encodeCommand.leaseGrant({ ID: 1n, TTL: 10n }));
    await log.propose(encodeCommand.leaseGrant({ ID: 2n, TTL: 30n }));
    lessor.granted(1n, 10);
    lessor.granted(2n, 30);
    clock.advance(8_000);
    roles.set("follower");
    clock.advance(20_000); // t = 28 s: lease 1 is long past its TTL, but this node does not lead
    await settle();
    expect(revoked).toEqual([]);
    roles.set("leader"); // t = 28 s: both leases now expire at 28 + 1 + TTL
    expect(lessor.remaining(1n)).toEqual({ ttl: 11, granted: 10 });
    clock.advance(10_999);
    await settle();
    expect(revoked).toEqual([]);
    clock.advance(1);
    await settle();
    expect(revoked).toEqual([1n]);
    clock.advance(20_000);
    await settle();
    expect(revoked).toEqual([1n, 2n]);
    expect(store.leases()).toEqual([]);
  });

  it("a follower answers renewals with nothing (the service forwards them)", async () => {
    await log.propose(encodeCommand.leaseGrant({ ID: 3n, TTL: 5n }));
    roles.set("follower");
    expect(lessor.isLeader()).toBe(false);
    clock.advance(100_000);
    await settle();
    expect(revoked).toEqual([]);
    expect(store.lease(3n)).toBeDefined();
  });
});
