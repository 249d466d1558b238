import type { ResponseHeader, WatchRequest, WatchResponse } from "../gen/etcdserverpb/rpc.js";
import type { Event } from "../gen/mvccpb/kv.js";
import { type WatchHub, type WatchStream, watchErrors } from "../server/watch.js";
import { keyRange } from "../store/keys.js";
import { groupByRevision, takeUpTo } from "./merge.js";
import type { ShardMap } from "./split.js";

interface RoutedWatcher {
  readonly id: bigint;
  readonly shards: readonly number[];
  /** Spans several shards: events are buffered per shard and merged up to the watermark. */
  readonly merged: boolean;
  /** Per shard index in `shards`: revision groups not yet sent. */
  readonly queues: { revision: number; events: Event[] }[][];
}

function response(
  partial: Partial<WatchResponse> & { header: ResponseHeader | undefined; watchId: bigint },
): WatchResponse {
  return {
    created: false,
    canceled: false,
    compactRevision: 0n,
    cancelReason: "",
    fragment: false,
    events: [],
    ...partial,
  };
}

const emptyKeyWatch = Buffer.from([0]);

/**
 * One client Watch stream over N shards: one WatchStream per shard hub underneath. A watch
 * inside one shard passes that shard's responses through (its IDs renamed). A watch over
 * several shards gets one sub-watcher per shard and the responses are merged in revision
 * order: a shard's events are held until every involved shard's watermark (the revision up
 * to which its sub-watcher has handed over everything) reaches them, so no event is sent
 * before an event of a lower revision still owed by another shard.
 */
export class ShardedWatchStream {
  private readonly subs: WatchStream[];
  private readonly watchers = new Map<bigint, RoutedWatcher>();
  private nextId = 0n;
  private blocked = false;
  private readonly progress: { waiting: Set<number>; revision: number }[] = [];
  private closed = false;

  constructor(
    hubs: readonly WatchHub[],
    private readonly map: ShardMap,
    private readonly header: (revision: bigint) => ResponseHeader,
    private readonly revisionOf: (shard: number) => number,
    private readonly out: (r: WatchResponse) => boolean,
    private readonly onClose: () => void,
    /** Events are held for a lagging shard: the router raises idle shards' revisions (bump). */
    private readonly onHeld: () => void = () => {},
  ) {
    this.subs = hubs.map((hub, i) =>
      hub.open({ write: (r) => this.fromShard(i, r), advanced: () => this.flushAll() }),
    );
  }

  watcherCount(): number {
    return this.watchers.size;
  }

  handle(req: WatchRequest): void {
    if (this.closed) return;
    if (req.createRequest) this.create(req.createRequest);
    else if (req.cancelRequest) this.cancel(req.cancelRequest.watchId);
    else if (req.progressRequest) {
      this.progress.push({ waiting: new Set(this.subs.keys()), revision: Number.MAX_SAFE_INTEGER });
      for (const sub of this.subs) sub.handle({ progressRequest: {} });
    }
  }

  drain(): void {
    this.blocked = false;
    for (const sub of this.subs) sub.drain();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const sub of this.subs) sub.close();
    this.watchers.clear();
    this.onClose();
  }

  private write(r: WatchResponse): boolean {
    if (this.closed) return false;
    const ok = this.out(r);
    if (!ok) this.blocked = true;
    return ok;
  }

  private current(shards: readonly number[]): number {
    return Math.min(...shards.map((s) => this.revisionOf(s)));
  }

  private create(c: NonNullable<WatchRequest["createRequest"]>): void {
    const key = c.key.length > 0 ? c.key : emptyKeyWatch;
    const range = keyRange(key, c.rangeEnd);
    const all = [...this.subs.keys()];
    const refuse = (reason: string) =>
      this.write(
        response({
          header: this.header(BigInt(this.current(all))),
          watchId: -1n,
          created: true,
          canceled: true,
          cancelReason: reason,
        }),
      );
    if (range.kind === "between" && Buffer.compare(range.key, range.end) >= 0) {
      refuse(watchErrors.emptyRange);
      return;
    }
    let id = c.watchId;
    if (id === 0n) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.watchers.has(id)) {
      refuse(watchErrors.duplicateId);
      return;
    }
    const shards = this.map.shardsOf(key, c.rangeEnd);
    const merged = shards.length > 1;
    this.watchers.set(id, { id, shards, merged, queues: shards.map(() => []) });
    // Sub-watcher IDs are the client's plus one: never 0, which would mean "assign one".
    const subId = id + 1n;
    if (!merged) {
      this.subs[shards[0]!]!.handle({ createRequest: { ...c, key, watchId: subId } });
      return;
    }
    // The created reply is ours (at the lowest current revision of the shards involved, so
    // that a client resuming from it misses nothing); the shards' own created replies are dropped.
    this.write(response({ header: this.header(BigInt(this.current(shards))), watchId: id, created: true }));
    for (const s of shards) {
      const clip = this.map.clip(key, c.rangeEnd, s);
      this.subs[s]!.handle({
        createRequest: {
          ...c,
          key: clip.key,
          rangeEnd: clip.rangeEnd,
          watchId: subId,
          fragment: false,
          progressNotify: c.progressNotify && s === shards[0],
        },
      });
    }
  }

  private cancel(id: bigint): void {
    const w = this.watchers.get(id);
    if (!w) return;
    this.watchers.delete(id);
    for (const s of w.shards) this.subs[s]!.handle({ cancelRequest: { watchId: id + 1n } });
    this.write(
      response({ header: this.header(BigInt(this.current(w.shards))), watchId: id, canceled: true }),
    );
  }

  private fromShard(shard: number, r: WatchResponse): boolean {
    if (this.closed) return false;
    if (r.watchId === -1n && !r.created) {
      this.progressReply(shard, Number(r.header?.revision ?? 0n));
      return !this.blocked;
    }
    const id = r.watchId - 1n;
    const w = this.watchers.get(id);
    if (!w) return !this.blocked;
    if (!w.merged) {
      if (r.canceled) this.watchers.delete(id);
      return this.write({ ...r, watchId: id });
    }
    if (r.created) return !this.blocked;
    if (r.canceled) {
      // A shard's history was compacted past the start: the whole watch ends, as etcd's would.
      this.watchers.delete(id);
      for (const s of w.shards)
        if (s !== shard) this.subs[s]!.handle({ cancelRequest: { watchId: id + 1n } });
      return this.write(response({ ...r, watchId: id }));
    }
    const at = w.shards.indexOf(shard);
    if (r.events.length === 0) {
      // A periodic progress notification (asked from the first shard only).
      if (w.queues.every((q) => q.length === 0)) {
        const mark = this.watermark(w);
        if (mark !== undefined) this.write(response({ header: this.header(BigInt(mark)), watchId: id }));
      }
      return !this.blocked;
    }
    w.queues[at]!.push(...groupByRevision(r.events));
    this.flush(w);
    return !this.blocked;
  }

  private watermark(w: RoutedWatcher): number | undefined {
    let mark = Number.MAX_SAFE_INTEGER;
    for (const s of w.shards) {
      const m = this.subs[s]!.watermark(w.id + 1n);
      if (m === undefined) return undefined;
      mark = Math.min(mark, m);
    }
    return mark;
  }

  private flush(w: RoutedWatcher): void {
    const mark = this.watermark(w);
    if (mark === undefined) return;
    for (const g of takeUpTo(w.queues, mark)) {
      this.write(response({ header: this.header(BigInt(g.revision)), watchId: w.id, events: g.events }));
    }
    if (w.queues.some((q) => q.length > 0)) this.onHeld();
  }

  private flushAll(): void {
    if (this.closed) return;
    for (const w of this.watchers.values()) if (w.merged && w.queues.some((q) => q.length > 0)) this.flush(w);
  }

  /** Progress replies come back from every shard in request order; ours goes out once all did. */
  private progressReply(shard: number, revision: number): void {
    const entry = this.progress.find((p) => p.waiting.has(shard));
    if (!entry) return;
    entry.waiting.delete(shard);
    entry.revision = Math.min(entry.revision, revision);
    while (this.progress.length > 0 && this.progress[0]!.waiting.size === 0) {
      const done = this.progress.shift()!;
      for (const w of this.watchers.values()) if (w.merged) this.flush(w);
      this.write(response({ header: this.header(BigInt(done.revision)), watchId: -1n }));
    }
  }
}
