import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { bytesSnapshot, type Snapshot } from "@quorum/consensus";

/** Where a snapshot image being received is kept, chunk by chunk, until it is installed. */
export interface ImageSink {
  /** Bytes appended so far. */
  readonly received: number;
  append(data: Uint8Array): void;
  /** The whole image, readable until `discard`. No more appends after this. */
  snapshot(index: number): Snapshot;
  /** Frees the image (removes its file). Idempotent. */
  discard(): void;
}

/** Keeps the image in memory (small state machines, simulations). */
export function memorySink(): ImageSink {
  let parts: Uint8Array[] = [];
  let received = 0;
  return {
    get received() {
      return received;
    },
    append(data) {
      parts.push(new Uint8Array(data)); // a copy (Buffer#slice would be a view)
      received += data.byteLength;
    },
    snapshot(index) {
      return bytesSnapshot(index, Buffer.concat(parts));
    },
    discard() {
      parts = [];
    },
  };
}

const PREFIX = "incoming-";
const READ_BYTES = 256 * 1024;

/**
 * Writes the image to a file in `dir` as it arrives, so a big state costs disk, not memory;
 * `snapshot()` reads it back in pieces for the state machine's `restore`. The file is scratch:
 * not synced (the state machine makes what it restores durable) and removed once installed.
 */
export function fileSink(dir: string, name: string): ImageSink {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${PREFIX}${name}.snap`);
  let fd: number | undefined = openSync(path, "w");
  let received = 0;
  const closeFile = () => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  return {
    get received() {
      return received;
    },
    append(data) {
      if (fd === undefined) throw new Error(`snapshot image ${path} is closed`);
      for (let at = 0; at < data.byteLength; ) at += writeSync(fd, data, at, data.byteLength - at);
      received += data.byteLength;
    },
    snapshot(index) {
      closeFile();
      const size = received;
      return {
        index,
        size,
        async *chunks() {
          const file = await open(path, "r");
          try {
            for (let at = 0; at < size; ) {
              const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, size - at));
              const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, at);
              if (bytesRead === 0) throw new Error(`snapshot image ${path} ended at ${at} of ${size} bytes`);
              at += bytesRead;
              yield buffer.subarray(0, bytesRead);
            }
          } finally {
            await file.close();
          }
        },
      };
    },
    discard() {
      closeFile();
      rmSync(path, { force: true });
    },
  };
}

/** Removes images left in `dir` by an earlier run that stopped mid-transfer. */
export function removeStaleImages(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names)
    if (n.startsWith(PREFIX) && n.endsWith(".snap")) rmSync(join(dir, n), { force: true });
}
