import type { Prng } from "./prng.js";

/**
 * Simulated durable storage for one node: named files of bytes.
 *
 * Contract (what a runtime may rely on, and no more):
 * - Writes (`append`, `writeAll`, `truncate`) are visible to reads at once, like the page cache.
 * - They become durable only when `sync()` returns for that file. `sync` is per file, like fsync.
 * - `SimDisk.crash()` keeps each file's synced contents and loses its unsynced writes. With
 *   `tornWrites`, a random prefix of the unsynced writes survives, and the last surviving
 *   append may survive only partly (a torn tail): a log store must detect a torn last record.
 * - `delete(name)` is durable at once (an unlink followed by a directory fsync).
 * - Handles from before a crash are fenced: the crashed incarnation's writes are ignored, so
 *   nothing it does after the crash reaches the disk the next incarnation reads.
 */
export interface SimFile {
  readonly name: string;
  /** The current contents (synced and unsynced). */
  read(): Uint8Array;
  size(): number;
  append(bytes: Uint8Array): void;
  /** Replaces the whole contents (write to a temp file and rename, in one step). */
  writeAll(bytes: Uint8Array): void;
  /** Cuts the file to `length` bytes (no-op when it is already shorter). */
  truncate(length: number): void;
  /** Makes every write so far durable. */
  sync(): void;
}

export interface DiskOptions {
  /** After a crash, keep a random prefix of the unsynced writes instead of none. */
  tornWrites?: boolean;
}

type PendingWrite =
  | { readonly kind: "append"; readonly bytes: Uint8Array }
  | { readonly kind: "writeAll"; readonly bytes: Uint8Array }
  | { readonly kind: "truncate"; readonly length: number };

interface FileState {
  durable: Uint8Array;
  pending: PendingWrite[];
  current: Uint8Array;
}

function apply(data: Uint8Array, w: PendingWrite): Uint8Array {
  switch (w.kind) {
    case "append": {
      const out = new Uint8Array(data.byteLength + w.bytes.byteLength);
      out.set(data, 0);
      out.set(w.bytes, data.byteLength);
      return out;
    }
    case "writeAll":
      return w.bytes.slice();
    case "truncate":
      return data.byteLength <= w.length ? data : data.slice(0, w.length);
  }
}

export interface DiskCounters {
  syncs: number;
  crashes: number;
  /** Unsynced writes lost in crashes. */
  lostWrites: number;
  /** Writes from a crashed incarnation that were ignored. */
  fencedWrites: number;
}

export class SimDisk {
  readonly counters: DiskCounters = { syncs: 0, crashes: 0, lostWrites: 0, fencedWrites: 0 };
  private readonly files = new Map<string, FileState>();
  private epoch = 0;

  constructor(
    private readonly prng: Prng,
    private readonly options: DiskOptions = {},
  ) {}

  /** A handle on `name` (created empty if missing) for the current incarnation. */
  file(name: string): SimFile {
    const epoch = this.epoch;
    const state = () => {
      let s = this.files.get(name);
      if (!s) {
        s = { durable: new Uint8Array(0), pending: [], current: new Uint8Array(0) };
        this.files.set(name, s);
      }
      return s;
    };
    const write = (w: PendingWrite) => {
      if (epoch !== this.epoch) {
        this.counters.fencedWrites++;
        return;
      }
      const s = state();
      s.pending.push(w);
      s.current = apply(s.current, w);
    };
    return {
      name,
      read: () => state().current.slice(),
      size: () => state().current.byteLength,
      append: (bytes) => write({ kind: "append", bytes: bytes.slice() }),
      writeAll: (bytes) => write({ kind: "writeAll", bytes: bytes.slice() }),
      truncate: (length) => {
        if (!Number.isInteger(length) || length < 0) throw new RangeError(`truncate(${length})`);
        write({ kind: "truncate", length });
      },
      sync: () => {
        if (epoch !== this.epoch) return;
        const s = state();
        this.counters.syncs++;
        s.durable = s.current;
        s.pending = [];
      },
    };
  }

  exists(name: string): boolean {
    return this.files.has(name);
  }

  list(): string[] {
    return [...this.files.keys()].sort();
  }

  delete(name: string): void {
    this.files.delete(name);
  }

  /** Bytes that would survive a crash right now without torn writes. */
  durableContents(name: string): Uint8Array | undefined {
    return this.files.get(name)?.durable.slice();
  }

  /** Loses unsynced writes (see the contract above) and fences every existing handle. */
  crash(): void {
    this.epoch++;
    this.counters.crashes++;
    for (const name of [...this.files.keys()].sort()) {
      const s = this.files.get(name) as FileState;
      let data = s.durable;
      let kept = 0;
      if (this.options.tornWrites && s.pending.length > 0) {
        kept = this.prng.int(0, s.pending.length);
        for (let i = 0; i < kept; i++) data = apply(data, s.pending[i] as PendingWrite);
        const next = s.pending[kept];
        if (next?.kind === "append" && next.bytes.byteLength > 1 && this.prng.chance(0.5)) {
          // A torn tail: part of the next append reached the platter.
          const part = next.bytes.subarray(0, this.prng.int(1, next.bytes.byteLength - 1));
          data = apply(data, { kind: "append", bytes: part });
        }
      }
      this.counters.lostWrites += s.pending.length - kept;
      s.durable = data;
      s.current = data;
      s.pending = [];
    }
  }
}
