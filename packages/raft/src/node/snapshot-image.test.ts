import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSnapshot } from "@quorum/consensus";
import { afterAll, describe, expect, it } from "vitest";
import { fileSink, memorySink, removeStaleImages } from "./snapshot-image.js";

const dir = mkdtempSync(join(tmpdir(), "quorum-raft-image-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("snapshot image sinks", () => {
  it("a file sink writes each chunk to disk as it arrives and reads the image back in pieces", async () => {
    const sink = fileSink(dir, "a");
    const path = join(dir, "incoming-a.snap");
    const parts = [Buffer.alloc(300_000, 1), Buffer.alloc(5, 2), Buffer.alloc(200_000, 3)];
    sink.append(parts[0]!);
    expect(statSync(path).size).toBe(300_000); // on disk, not held in memory
    sink.append(parts[1]!);
    sink.append(parts[2]!);
    expect(sink.received).toBe(500_005);
    const snapshot = sink.snapshot(42);
    expect(snapshot.index).toBe(42);
    expect(snapshot.size).toBe(500_005);
    let pieces = 0;
    for await (const piece of snapshot.chunks()) {
      expect(piece.byteLength).toBeLessThanOrEqual(256 * 1024);
      pieces++;
    }
    expect(pieces).toBe(2);
    expect(Buffer.compare(Buffer.from(await readSnapshot(snapshot)), Buffer.concat(parts))).toBe(0);
    sink.discard();
    sink.discard();
    expect(existsSync(path)).toBe(false);
  });

  it("a memory sink copies its chunks (the caller may reuse their buffers)", async () => {
    const sink = memorySink();
    const chunk = Buffer.from("abc");
    sink.append(chunk);
    chunk.fill(0);
    expect(Buffer.from(await readSnapshot(sink.snapshot(1))).toString()).toBe("abc");
  });

  it("removes images left by an earlier run, and nothing else", () => {
    writeFileSync(join(dir, "incoming-old.snap"), "x");
    writeFileSync(join(dir, "keep.db"), "x");
    removeStaleImages(dir);
    expect(readdirSync(dir)).toEqual(["keep.db"]);
    removeStaleImages(join(dir, "missing")); // no directory yet: nothing to do
  });
});
