import type { Clock, Logger, Timer } from "@quorum/transport";
import {
  type ResponseHeader,
  type WatchCreateRequest,
  WatchCreateRequest_FilterType,
  type WatchRequest,
  type WatchResponse,
} from "../gen/etcdserverpb/rpc.js";
import { type Event, Event_EventType } from "../gen/mvccpb/kv.js";
import { inRange, type KeyRange, keyRange } from "../store/keys.js";
import type { KvStore, RevisionChanges } from "../store/kv-store.js";

export interface WatchHubOptions {
  readonly store: KvStore;
  readonly clock: Clock;
  /** A response header at this revision (cluster, member and term filled in by the service). */
  readonly header: (revision: bigint) => ResponseHeader;
  /** etcd's --experimental-watch-progress-notify-interval (default 10 min). */
  readonly progressNotifyIntervalMs?: number;
  /**
   * Per stream: responses (and bytes) allowed to wait for a slow client. Past either bound,
   * a watcher stops taking live events and later catches up from history (etcd's victims /
   * unsynced watchers), so writers never wait for watchers.
   */
  readonly maxPendingResponses?: number;
  readonly maxPendingBytes?: number;
  /** Watchers that asked for `fragment` get responses split at this size (etcd: max-request-bytes + 512 KiB). */
  readonly fragmentBytes?: number;
  /** Revisions read from history per catch-up step of one watcher. */
  readonly catchUpRevisions?: number;
  readonly logger?: Logger;
  /** Called when a slow stream's watcher stops taking live events (for metrics). */
  readonly onUnsynced?: () => void;
}

/** Where a watch stream's responses go: the gRPC call, or a test double. */
export interface WatchSink {
  /** Sends a response; false when the consumer is backed up (then `WatchStream.drain()` follows). */
  write(response: WatchResponse): boolean;
  /** Watchers may have moved past more revisions (`WatchStream.watermark`); for the shard router. */
  advanced?(): void;
}

interface Watcher {
  readonly id: bigint;
  readonly range: KeyRange;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly prevKv: boolean;
  readonly fragment: boolean;
  readonly progressNotify: boolean;
  /** The first revision this watcher has not yet been sent (or skipped as unmatched). */
  nextRev: number;
  /** Takes live events; otherwise it catches up from history first. */
  synced: boolean;
  /** Sent something since the last progress tick. */
  active: boolean;
}

const emptyKeyWatch = Buffer.from([0]);

export const watchErrors = {
  duplicateId: "mvcc: duplicate watch ID provided on the WatchStream",
  emptyRange: "mvcc: watcher range is empty",
} as const;

function response(
  partial: Partial<WatchResponse> & { header: ResponseHeader; watchId: bigint },
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

function eventBytes(e: Event): number {
  const kv = (x: Event["kv"]) => (x ? x.key.length + x.value.length + 40 : 0);
  return kv(e.kv) + kv(e.prevKv) + 8;
}

/**
 * Serves etcd's Watch on one replica, from its applied state: live events come from the
 * store's `onChanges`, replays and catch-ups from its MVCC history. Each watcher keeps the
 * next revision it owes the client, so the switch from history to live (or back, for a
 * slow client) never skips or repeats a revision: both run synchronously against the
 * store between applies.
 */
export class WatchHub {
  readonly store: KvStore;
  readonly clock: Clock;
  readonly header: (revision: bigint) => ResponseHeader;
  readonly maxPendingResponses: number;
  readonly maxPendingBytes: number;
  readonly fragmentBytes: number;
  readonly catchUpRevisions: number;
  readonly logger: Logger | undefined;
  readonly onUnsynced: (() => void) | undefined;
  private readonly progressIntervalMs: number;
  private readonly streams = new Set<WatchStream>();
  private lastRev: number;
  private readonly unsubscribe: () => void;
  private progressTimer: Timer | undefined;
  private closed = false;

  constructor(options: WatchHubOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.header = options.header;
    this.maxPendingResponses = options.maxPendingResponses ?? 1024;
    this.maxPendingBytes = options.maxPendingBytes ?? 32 << 20;
    this.fragmentBytes = options.fragmentBytes ?? (1.5 * 1024 + 512) * 1024;
    this.catchUpRevisions = options.catchUpRevisions ?? 1000;
    this.logger = options.logger;
    this.onUnsynced = options.onUnsynced;
    this.progressIntervalMs = Math.max(100, options.progressNotifyIntervalMs ?? 10 * 60 * 1000);
    this.lastRev = this.store.visibleRevision();
    this.unsubscribe = this.store.onChanges((changes) => this.onChanges(changes));
  }

  open(sink: WatchSink): WatchStream {
    const stream = new WatchStream(this, sink, () => {
      this.streams.delete(stream);
      if (this.streams.size === 0) {
        this.progressTimer?.cancel();
        this.progressTimer = undefined;
      }
    });
    this.streams.add(stream);
    if (!this.progressTimer) this.scheduleProgress();
    return stream;
  }

  /** Streams open now. */
  streamCount(): number {
    return this.streams.size;
  }

  /** Watchers open now, over all streams. */
  watcherCount(): number {
    let n = 0;
    for (const stream of this.streams) n += stream.watcherIds().length;
    return n;
  }

  private onChanges(changes: readonly RevisionChanges[]): void {
    const first = changes[0]!;
    // The store moved without telling us (a snapshot was installed): watchers that were
    // owed revisions in between catch up from history.
    const previous = first.previous ?? first.revision - 1;
    const gapBefore = previous > this.lastRev ? previous + 1 : undefined;
    this.lastRev = changes[changes.length - 1]!.revision;
    for (const stream of this.streams) stream.deliver(changes, gapBefore);
  }

  /** The progress tick runs while streams are open; it also notices a store that jumped. */
  private scheduleProgress(): void {
    if (this.closed || this.streams.size === 0) return;
    this.progressTimer = this.clock.schedule(this.progressIntervalMs, () => {
      const rev = this.store.visibleRevision();
      if (rev > this.lastRev) {
        for (const stream of this.streams) stream.deliver([], rev + 1);
        this.lastRev = rev;
      }
      for (const stream of this.streams) stream.progressTick();
      this.progressTimer = undefined;
      this.scheduleProgress();
    });
  }

  close(): void {
    this.closed = true;
    this.progressTimer?.cancel();
    this.unsubscribe();
    for (const stream of [...this.streams]) stream.close();
  }
}

/** One client's Watch stream: many watchers, one ordered, bounded queue of responses. */
export class WatchStream {
  private readonly watchers = new Map<bigint, Watcher>();
  private nextId = 0n;
  private readonly queue: { response: WatchResponse; bytes: number }[] = [];
  private queuedBytes = 0;
  private blocked = false;
  private pumpScheduled = false;
  private progressPending = false;
  private closed = false;

  constructor(
    private readonly hub: WatchHub,
    private readonly sink: WatchSink,
    private readonly onClose: () => void,
  ) {}

  handle(req: WatchRequest): void {
    if (this.closed) return;
    if (req.createRequest) this.create(req.createRequest);
    else if (req.cancelRequest) this.cancel(req.cancelRequest.watchId);
    else if (req.progressRequest) this.requestProgress();
  }

  /** The consumer can take more. */
  drain(): void {
    this.blocked = false;
    this.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    this.queue.length = 0;
    this.onClose();
  }

  /** Watchers on this stream (tests, metrics). */
  watcherIds(): bigint[] {
    return [...this.watchers.keys()];
  }

  /**
   * The highest revision through which this watcher's events have all reached the sink
   * (sent, or skipped as unmatched); undefined for an unknown watcher. The shard router
   * merges several shards' watchers up to the lowest of their watermarks.
   */
  watermark(id: bigint): number | undefined {
    const w = this.watchers.get(id);
    if (!w) return undefined;
    let mark = w.nextRev - 1;
    for (const item of this.queue) {
      const r = item.response;
      if (r.watchId === id && r.events.length > 0) {
        mark = Math.min(mark, Number(r.events[0]!.kv?.modRevision ?? 0n) - 1);
        break;
      }
    }
    return mark;
  }

  /** Whether a watcher currently takes live events (false while it catches up). */
  isSynced(id: bigint): boolean | undefined {
    return this.watchers.get(id)?.synced;
  }

  pendingResponses(): number {
    return this.queue.length;
  }

  // ---- requests --------------------------------------------------------------------------

  private create(req: WatchCreateRequest): void {
    const store = this.hub.store;
    const cur = store.visibleRevision();
    const key = req.key.length > 0 ? req.key : emptyKeyWatch;
    const range = keyRange(key, req.rangeEnd);
    const refuse = (reason: string) =>
      this.enqueue(
        response({
          header: this.hub.header(BigInt(cur)),
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
    let id = req.watchId;
    if (id === 0n) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.watchers.has(id)) {
      refuse(watchErrors.duplicateId);
      return;
    }
    const start = Number(req.startRevision);
    const watcher: Watcher = {
      id,
      range,
      noPut: req.filters.includes(WatchCreateRequest_FilterType.NOPUT),
      noDelete: req.filters.includes(WatchCreateRequest_FilterType.NODELETE),
      prevKv: req.prevKv,
      fragment: req.fragment,
      progressNotify: req.progressNotify,
      nextRev: start > 0 ? start : cur + 1,
      // A start in the future waits for live events, as etcd's synced group does.
      synced: start <= 0 || start > cur,
      active: false,
    };
    this.watchers.set(id, watcher);
    // The created reply goes first: no event may precede it.
    this.enqueue(response({ header: this.hub.header(BigInt(cur)), watchId: id, created: true }));
    if (!watcher.synced) this.schedulePump();
  }

  private cancel(id: bigint): void {
    if (!this.watchers.delete(id)) return; // etcd sends nothing for an unknown id
    this.enqueue(
      response({
        header: this.hub.header(BigInt(this.hub.store.visibleRevision())),
        watchId: id,
        canceled: true,
      }),
    );
  }

  /**
   * etcd ≤ 3.4.24 answered at once; later versions wait until every watcher of the stream
   * is synced, so that the revision never runs ahead of events still owed. Both are the same
   * when nothing is catching up; the later rule is the safe one.
   */
  private requestProgress(): void {
    if ([...this.watchers.values()].every((w) => w.synced)) this.sendProgress();
    else this.progressPending = true;
  }

  private sendProgress(): void {
    this.progressPending = false;
    this.enqueue(
      response({ header: this.hub.header(BigInt(this.hub.store.visibleRevision())), watchId: -1n }),
    );
  }

  // ---- events ----------------------------------------------------------------------------

  private select(w: Watcher, events: readonly Event[]): Event[] {
    const out: Event[] = [];
    for (const e of events) {
      if (e.type === Event_EventType.PUT ? w.noPut : w.noDelete) continue;
      if (!e.kv || !inRange(w.range, e.kv.key)) continue;
      out.push(w.prevKv || !e.prevKv ? e : { type: e.type, kv: e.kv, prevKv: undefined });
    }
    return out;
  }

  private full(): boolean {
    return this.queue.length >= this.hub.maxPendingResponses || this.queuedBytes >= this.hub.maxPendingBytes;
  }

  private lowWater(): boolean {
    return (
      !this.blocked &&
      this.queue.length < this.hub.maxPendingResponses / 2 &&
      this.queuedBytes < this.hub.maxPendingBytes / 2
    );
  }

  /** Live changes from the store, in revision order. */
  deliver(changes: readonly RevisionChanges[], gapBefore: number | undefined): void {
    if (this.closed) return;
    let fellBehind = false;
    for (const w of this.watchers.values()) {
      if (!w.synced) continue;
      if (gapBefore !== undefined && w.nextRev < gapBefore) {
        w.synced = false;
        fellBehind = true;
        continue;
      }
      for (const change of changes) {
        if (change.revision < w.nextRev) continue;
        const events = this.select(w, change.events);
        if (events.length > 0 && this.full()) {
          // Too far behind: stop queueing; catch up from history once the client drains.
          w.synced = false;
          fellBehind = true;
          this.hub.logger?.debug(
            { watchId: String(w.id), revision: change.revision },
            "slow watcher unsynced",
          );
          this.hub.onUnsynced?.();
          break;
        }
        w.nextRev = change.revision + 1;
        if (events.length > 0) this.sendEvents(w, events, change.revision);
      }
    }
    if (fellBehind) this.schedulePump();
    this.sink.advanced?.();
  }

  private sendEvents(w: Watcher, events: Event[], revision: number): void {
    w.active = true;
    const header = this.hub.header(BigInt(revision));
    const sizes = events.map(eventBytes);
    const total = sizes.reduce((a, b) => a + b, 0);
    if (!w.fragment || total < this.hub.fragmentBytes) {
      this.enqueue(response({ header, watchId: w.id, events }), total);
      return;
    }
    // Split between events (never inside one); all but the last part carry `fragment`.
    let start = 0;
    let bytes = 0;
    const parts: { events: Event[]; bytes: number }[] = [];
    for (let i = 0; i < events.length; i++) {
      if (i > start && bytes + sizes[i]! > this.hub.fragmentBytes) {
        parts.push({ events: events.slice(start, i), bytes });
        start = i;
        bytes = 0;
      }
      bytes += sizes[i]!;
    }
    parts.push({ events: events.slice(start), bytes });
    for (const [i, part] of parts.entries()) {
      const fragment = i < parts.length - 1;
      this.enqueue(response({ header, watchId: w.id, events: part.events, fragment }), part.bytes);
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * One catch-up step per unsynced watcher: read the next window of history (synchronously,
   * so no apply interleaves), queue it, and mark the watcher synced once it reaches the
   * store's revision. Runs only while the client keeps up with what is queued.
   */
  private pump(): void {
    if (this.closed) return;
    const store = this.hub.store;
    const cur = store.visibleRevision();
    const compacted = store.compactRevision();
    let behind = false;
    for (const w of [...this.watchers.values()]) {
      if (w.synced) continue;
      if (!this.lowWater()) {
        behind = true;
        break;
      }
      if (w.nextRev < compacted) {
        // etcd: created (already sent), then canceled with the compacted revision.
        this.watchers.delete(w.id);
        this.enqueue(
          response({
            header: this.hub.header(0n),
            watchId: w.id,
            canceled: true,
            compactRevision: BigInt(compacted),
          }),
        );
        continue;
      }
      if (w.nextRev <= cur) {
        const to = Math.min(cur, w.nextRev + this.hub.catchUpRevisions - 1);
        const changes = store.changesBetween(w.nextRev, to, { range: w.range, prevKv: w.prevKv });
        const events = changes.flatMap((c) => this.select(w, c.events));
        w.nextRev = to + 1;
        if (events.length > 0) this.sendEvents(w, events, to);
      }
      if (w.nextRev > cur) w.synced = true;
      else behind = true;
    }
    if (behind) {
      // Continue on the next turn, or on drain when the client is the bottleneck.
      if (this.lowWater()) this.schedulePump();
    } else if (this.progressPending) {
      this.sendProgress();
    }
    this.sink.advanced?.();
  }

  /** A periodic progress notification to synced watchers that asked for it and were idle. */
  progressTick(): void {
    if (this.closed) return;
    const rev = BigInt(this.hub.store.visibleRevision());
    for (const w of this.watchers.values()) {
      if (w.progressNotify && w.synced && !w.active && !this.full()) {
        this.enqueue(response({ header: this.hub.header(rev), watchId: w.id }));
      }
      w.active = false;
    }
  }

  // ---- the queue -------------------------------------------------------------------------

  private enqueue(r: WatchResponse, bytes = 0): void {
    if (this.closed) return;
    this.queue.push({ response: r, bytes });
    this.queuedBytes += bytes;
    this.flush();
  }

  private flush(): void {
    while (!this.blocked && this.queue.length > 0 && !this.closed) {
      const item = this.queue.shift()!;
      this.queuedBytes -= item.bytes;
      if (!this.sink.write(item.response)) this.blocked = true;
    }
    if (this.lowWater() && [...this.watchers.values()].some((w) => !w.synced)) this.schedulePump();
  }
}
