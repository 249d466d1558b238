import { type LogStore, type LogUpdate, MemoryStorage } from "../core/storage.js";
import type { Entry, EntryType, HardState, RaftMember, SnapshotMeta } from "../core/types.js";

/**
 * The part of `@quorum/sim`'s `SimFile` this store uses (structural, so `@quorum/raft/testing`
 * needs no runtime dependency on the simulator). Writes are visible at once and durable only
 * after `sync()`.
 */
export interface DiskFile {
  read(): Uint8Array;
  size(): number;
  append(bytes: Uint8Array): void;
  writeAll(bytes: Uint8Array): void;
  truncate(length: number): void;
  sync(): void;
}

export interface SimDiskLogStoreOptions {
  /** When the file is empty: bootstrap the log with this configuration (durably). */
  readonly initialMembers?: readonly RaftMember[];
  /**
   * Sync off the caller's path, as a store with a writer thread does: `save` writes at once
   * and returns a promise that resolves once the write is synced, `syncDelayMs()` later on
   * `clock` (the node's: a crash in between cancels the sync, and the write is lost).
   */
  readonly asyncSync?: {
    readonly clock: { schedule(ms: number, fn: () => void): unknown };
    readonly syncDelayMs: () => number;
  };
}

type EncodedEntry = [index: number, term: number, type: EntryType, data: string];

/** One record of the file: a saved Ready, a compaction, or a checkpoint of the whole state. */
type Rec =
  | {
      readonly k: "save";
      readonly hs?: HardState | undefined;
      readonly snap?: SnapshotMeta | undefined;
      readonly ents?: EncodedEntry[] | undefined;
    }
  | { readonly k: "compact"; readonly index: number }
  | {
      readonly k: "checkpoint";
      readonly hs: HardState;
      readonly snap: SnapshotMeta;
      readonly ents: EncodedEntry[];
    };

const HEADER = 8; // u32 payload length, u32 checksum
/** A compaction rewrites the file as one checkpoint when it has grown past this many bytes. */
const REWRITE_BYTES = 64 * 1024;

/** FNV-1a, enough to tell a torn or partial record from a whole one. */
function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function encodeEntries(entries: readonly Entry[]): EncodedEntry[] {
  return entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString("base64")]);
}

function decodeEntries(entries: readonly EncodedEntry[]): Entry[] {
  return entries.map(([index, term, type, data]) => ({
    index,
    term,
    type,
    data: new Uint8Array(Buffer.from(data, "base64")),
  }));
}

function frame(rec: Rec): Uint8Array {
  const payload = Buffer.from(JSON.stringify(rec), "utf8");
  const out = new Uint8Array(HEADER + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.byteLength);
  view.setUint32(4, checksum(payload));
  out.set(payload, HEADER);
  return out;
}

/**
 * A `LogStore` on one simulated file (`SimDisk`), for simulations whose crashes lose unsynced
 * writes. The file is a sequence of checksummed records; `save` appends the Ready's update and
 * then syncs, so it is durable when `save` returns (as SqliteLogStore's transaction is).
 * `write` + `sync` are the two halves, exposed so tests can model a crash in between or a
 * runtime that syncs late. Opening replays the records, stopping at (and cutting off) a torn
 * or partial last record. Reads are served from an in-memory mirror of what was written.
 */
export class SimDiskLogStore implements LogStore {
  private mem = new MemoryStorage();
  /** Records written and not yet synced by this store. */
  private unsynced = 0;
  /** Bytes dropped at open: a torn tail. */
  readonly tornBytes: number;
  /** Whole records replayed at open. */
  readonly recovered: number;

  private readonly asyncSync: SimDiskLogStoreOptions["asyncSync"];

  constructor(
    private readonly file: DiskFile,
    options: SimDiskLogStoreOptions = {},
  ) {
    this.asyncSync = options.asyncSync;
    const bytes = file.read();
    let at = 0;
    let count = 0;
    while (at + HEADER <= bytes.byteLength) {
      const view = new DataView(bytes.buffer, bytes.byteOffset + at);
      const length = view.getUint32(0);
      const sum = view.getUint32(4);
      if (at + HEADER + length > bytes.byteLength) break;
      const payload = bytes.subarray(at + HEADER, at + HEADER + length);
      if (checksum(payload) !== sum) break;
      this.replay(JSON.parse(Buffer.from(payload).toString("utf8")) as Rec);
      at += HEADER + length;
      count++;
    }
    this.recovered = count;
    this.tornBytes = bytes.byteLength - at;
    if (this.tornBytes > 0) {
      file.truncate(at);
      file.sync();
    }
    if (count === 0 && options.initialMembers) {
      this.write({ snapshot: { index: 0, term: 0, members: options.initialMembers } });
      this.sync();
    }
  }

  private replay(rec: Rec): void {
    switch (rec.k) {
      case "save":
        this.mem.save({
          hardState: rec.hs,
          snapshot: rec.snap,
          entries: rec.ents ? decodeEntries(rec.ents) : undefined,
        });
        return;
      case "compact":
        this.mem.compact(rec.index);
        return;
      case "checkpoint":
        this.mem = new MemoryStorage();
        this.mem.save({ hardState: rec.hs, snapshot: rec.snap, entries: decodeEntries(rec.ents) });
        return;
    }
  }

  // ---- Storage (reads see every write, synced or not, like the page cache) ----

  hardState(): HardState {
    return this.mem.hardState();
  }
  entries(lo: number, hi: number, maxBytes?: number): Entry[] {
    return this.mem.entries(lo, hi, maxBytes);
  }
  term(index: number): number | undefined {
    return this.mem.term(index);
  }
  firstIndex(): number {
    return this.mem.firstIndex();
  }
  lastIndex(): number {
    return this.mem.lastIndex();
  }
  snapshot(): SnapshotMeta {
    return this.mem.snapshot();
  }
  configEntries(): Entry[] {
    return this.mem.configEntries();
  }

  // ---- writes ----

  /** Durable on return (`write` then `sync`), or with `asyncSync` once the promise resolves. */
  save(update: LogUpdate): void | Promise<void> {
    this.write(update);
    const later = this.asyncSync;
    if (!later) {
      this.sync();
      return;
    }
    return new Promise<void>((resolve) => {
      later.clock.schedule(later.syncDelayMs(), () => {
        this.sync();
        resolve();
      });
    });
  }

  /**
   * Writes `update` to the file without syncing: visible to reads, lost by a crash before the
   * next `sync` (or torn, with `tornWrites`). Validates first: a refused update writes nothing.
   */
  write(update: LogUpdate): void {
    if (!update.hardState && !update.snapshot && !(update.entries && update.entries.length > 0)) return;
    this.mem.save(update); // throws (changing nothing) on a gap or an overwrite of compacted entries
    this.file.append(
      frame({
        k: "save",
        hs: update.hardState,
        snap: update.snapshot,
        ents: update.entries && update.entries.length > 0 ? encodeEntries(update.entries) : undefined,
      }),
    );
    this.unsynced++;
  }

  /** Makes every write so far durable. */
  sync(): void {
    this.file.sync();
    this.unsynced = 0;
  }

  /** Writes not yet synced (for tests). */
  pendingWrites(): number {
    return this.unsynced;
  }

  compact(index: number): void {
    if (index <= this.mem.snapshot().index) return;
    this.mem.compact(index);
    if (this.file.size() > REWRITE_BYTES) {
      // Rewrite the file as one checkpoint (write-temp-and-rename, in one step on SimDisk).
      const first = this.mem.firstIndex();
      this.file.writeAll(
        frame({
          k: "checkpoint",
          hs: this.mem.hardState(),
          snap: this.mem.snapshot(),
          ents: encodeEntries(this.mem.entries(first, this.mem.lastIndex() + 1)),
        }),
      );
    } else {
      this.file.append(frame({ k: "compact", index }));
    }
    this.sync();
  }

  close(): void {}
}
