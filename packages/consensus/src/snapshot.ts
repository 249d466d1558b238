import type { Snapshot } from "./state-machine.js";

/** A snapshot held in memory, split into chunks of at most `chunkSize` bytes. */
export function bytesSnapshot(index: number, data: Uint8Array, chunkSize = 256 * 1024): Snapshot {
  return {
    index,
    size: data.byteLength,
    async *chunks() {
      for (let offset = 0; offset < data.byteLength; offset += chunkSize) {
        yield data.subarray(offset, Math.min(offset + chunkSize, data.byteLength));
      }
    },
  };
}

/** Reads a whole snapshot into one buffer (for small images and tests). */
export async function readSnapshot(snapshot: Snapshot): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of snapshot.chunks()) parts.push(chunk);
  return Buffer.concat(parts);
}
