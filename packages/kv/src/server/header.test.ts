import { createHash } from "node:crypto";
import type { LogEvent, LogStatus, Member } from "@quorum/consensus";
import { SingleNodeLog } from "@quorum/consensus/testing";
import { describe, expect, it } from "vitest";
import { type ApplyResult, KvStore } from "../store/kv-store.js";
import { KvService } from "./kv-server.js";

const sha1 = (s: string) => createHash("sha1").update(s).digest().readBigUInt64BE(0);

describe("response headers", () => {
  it("computes member and cluster IDs once per membership, and again when it changes", () => {
    const store = KvStore.open({ path: ":memory:" });
    const inner = new SingleNodeLog<ApplyResult>("n1", store);
    let members: Member[] = [{ id: "n1", address: "a1", learner: false }];
    const listeners = new Set<(e: LogEvent) => void>();
    const log = Object.assign(Object.create(inner) as SingleNodeLog<ApplyResult>, {
      status: (): LogStatus => ({ ...inner.status(), members }),
      subscribe: (l: (e: LogEvent) => void) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    });
    let lookups = 0;
    const service = new KvService({
      log,
      store,
      leaseExpiry: false,
      memberInfo: (m) => {
        lookups++;
        return { id: sha1(m.id), name: m.id, peerURLs: [], clientURLs: [] };
      },
    });
    try {
      const first = service.header(5n);
      expect(first.memberId).toBe(sha1("n1"));
      expect(first.revision).toBe(5n);
      const looked = lookups;
      for (let i = 0; i < 100; i++) service.header(BigInt(i));
      expect(lookups).toBe(looked); // cached
      // A new member, seen through status() alone (a log that emits no membersChanged).
      members = [...members, { id: "n2", address: "a2", learner: false }];
      const second = service.header(6n);
      expect(second.memberId).toBe(sha1("n1"));
      expect(second.clusterId).not.toBe(first.clusterId);
      expect(lookups).toBeGreaterThan(looked);
      // A membersChanged event drops the cache too.
      const again = lookups;
      service.header(7n);
      expect(lookups).toBe(again);
      for (const l of listeners) l({ type: "membersChanged", members });
      expect(service.header(8n).clusterId).toBe(second.clusterId);
      expect(lookups).toBeGreaterThan(again);
    } finally {
      service.close();
      store.close();
    }
  });
});
