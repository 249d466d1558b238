import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningGrpcServer, startGrpcServer } from "@quorum/transport";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShuffleService } from "../gen/quorum/mapreduce/v1/mapreduce.js";
import { FetchError, mapOutputPath, ShuffleReader, shuffleService } from "./shuffle.js";

describe("shuffle", () => {
  let mine: string;
  let theirs: string;
  let server: RunningGrpcServer;
  let reader: ShuffleReader;
  const big = Buffer.alloc(3 * 1024 * 1024 + 5, "k\t1\n"); // more than one 1 MiB chunk

  beforeAll(async () => {
    mine = mkdtempSync(join(tmpdir(), "quorum-mr-shuffle-mine-"));
    theirs = mkdtempSync(join(tmpdir(), "quorum-mr-shuffle-theirs-"));
    writeFileSync(mapOutputPath(mine, 0, 1), "own\t1\n");
    writeFileSync(mapOutputPath(theirs, 1, 1), big);
    writeFileSync(mapOutputPath(theirs, 2, 1), "");
    server = await startGrpcServer({
      address: "127.0.0.1:0",
      services: [{ definition: ShuffleService, implementation: shuffleService(theirs) }],
    });
    reader = new ShuffleReader("me", mine, 5_000);
  });
  afterAll(async () => {
    reader.close();
    await server.shutdown(200);
    rmSync(mine, { recursive: true, force: true });
    rmSync(theirs, { recursive: true, force: true });
  });

  const at = (mapIndex: number, workerId: string) => ({
    mapIndex,
    workerId,
    shuffleAddress: workerId === "me" ? "127.0.0.1:1" : server.address,
  });

  it("reads its own map output from disk, without its shuffle service", async () => {
    // 127.0.0.1:1 serves nothing: a read through gRPC would fail.
    expect((await reader.read(at(0, "me"), 1)).toString()).toBe("own\t1\n");
  });

  it("fetches another worker's map output over gRPC, in chunks, empty files included", async () => {
    expect((await reader.read(at(1, "them"), 1)).equals(big)).toBe(true);
    expect((await reader.read(at(2, "them"), 1)).length).toBe(0);
  });

  it("fails with the location when the output is not there", async () => {
    const missing = reader.read(at(3, "them"), 1);
    await expect(missing).rejects.toBeInstanceOf(FetchError);
    await expect(missing).rejects.toMatchObject({ location: { mapIndex: 3, workerId: "them" } });
    await expect(reader.read(at(3, "me"), 1)).rejects.toThrow(/own map output unreadable/);
  });
});
