// The watch side of `pnpm bench:kv`'s watch scenarios: one Watch stream on a prefix or a
// range, opened before the writers start, that matches every event it receives to the
// acknowledgement of the put that made it (by key and revision: with shards, two keys may
// share a revision) and measures the time from acknowledgement to receipt.
import grpc from "@grpc/grpc-js";
import hdr from "hdr-histogram-js";
import { WatchRequest, WatchResponse } from "../dist/gen/etcdserverpb/rpc.js";

const identity = (b) => b;

/** etcd's prefix end: the prefix with its last byte below 0xff incremented. */
function prefixEnd(prefix) {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** etcd's range for "every key from `key` on". */
export const fromKey = (key) => ({ key: Buffer.from(key), rangeEnd: Buffer.from([0]) });
export const prefixRange = (prefix) => ({ key: Buffer.from(prefix), rangeEnd: prefixEnd(prefix) });

/**
 * A watcher on `range` ({ key, rangeEnd }) at `endpoint`. `acked(key, revision)` is called by
 * the writers when a put's response arrives; `measuring` marks the window whose events and
 * latencies count.
 *
 * Latency is receipt minus acknowledgement. An event can beat its put's response to the
 * client (both leave the server at about the same time); it then counts as 0 ms and in
 * `beforeAck`.
 */
export async function openWatcher(endpoint, range, timeoutMs = 10_000) {
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
    "bench.connection": "watch",
  });
  const call = client.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", identity, identity);
  const latency = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  // "revision/key" -> { ack?: ms, event?: ms, measured: boolean }
  const pending = new Map();
  let measuring = false;
  let events = 0;
  let beforeAck = 0;
  let failure;
  let created;
  const createdP = new Promise((resolve, reject) => {
    created = { resolve, reject };
  });

  const settle = (rev, entry) => {
    pending.delete(rev);
    if (!entry.measured) return;
    const ms = entry.event - entry.ack;
    if (ms < 0) beforeAck++;
    latency.recordValue(Math.max(1, Math.round(Math.max(0, ms) * 1000)));
  };

  call.on("data", (buf) => {
    const now = performance.now();
    const res = WatchResponse.decode(buf);
    if (res.created) created.resolve();
    if (res.canceled) {
      failure ??= new Error(`watch canceled: ${res.cancelReason || "no reason"}`);
      created.reject(failure);
    }
    for (const ev of res.events) {
      if (measuring) events++;
      const id = `${ev.kv?.modRevision ?? 0n}/${ev.kv?.key.toString("latin1")}`;
      const entry = pending.get(id);
      if (entry?.ack !== undefined) {
        entry.event = now;
        settle(id, entry);
      } else pending.set(id, { event: now, measured: measuring });
    }
  });
  call.on("error", (err) => {
    if (err.code !== grpc.status.CANCELLED) failure ??= err;
    created.reject(err);
  });
  call.write(
    Buffer.from(
      WatchRequest.encode(
        WatchRequest.fromPartial({ createRequest: { key: range.key, rangeEnd: range.rangeEnd } }),
      ).finish(),
    ),
  );
  const timer = setTimeout(
    () => created.reject(new Error(`watch not created after ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    await createdP;
  } finally {
    clearTimeout(timer);
  }

  return {
    set measuring(on) {
      measuring = on;
    },
    acked(key, revision) {
      const now = performance.now();
      const id = `${revision}/${key.toString("latin1")}`;
      const entry = pending.get(id);
      if (entry?.event !== undefined) {
        entry.ack = now;
        entry.measured = measuring;
        settle(id, entry);
      } else pending.set(id, { ack: now, measured: measuring });
    },
    /** Waits until every acknowledged put's event has arrived (or `timeoutMs` passed). */
    async drain(timeoutMs = 5_000) {
      const deadline = performance.now() + timeoutMs;
      const waiting = () => [...pending.values()].filter((e) => e.ack !== undefined && e.event === undefined);
      while (waiting().length > 0 && performance.now() < deadline && !failure) {
        await new Promise((r) => setTimeout(r, 20));
      }
      return waiting().length;
    },
    result(elapsedSeconds) {
      return {
        eventsPerSec: events / elapsedSeconds,
        eventP50Ms: latency.getValueAtPercentile(50) / 1000,
        eventP99Ms: latency.getValueAtPercentile(99) / 1000,
        beforeAck,
        failure: failure?.message,
      };
    },
    close() {
      call.cancel();
      client.close();
      latency.destroy?.();
    },
  };
}
