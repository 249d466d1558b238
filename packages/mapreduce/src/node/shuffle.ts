import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type ServerWritableStream,
  type ServiceError,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { createGrpcClient } from "@quorum/transport";
import {
  type FetchPartitionRequest,
  type MapLocation,
  type PartitionChunk,
  ShuffleClient,
} from "../gen/quorum/mapreduce/v1/mapreduce.js";

/** Where a worker keeps map task `mapIndex`'s output for reduce partition `partition`. */
export function mapOutputPath(dir: string, mapIndex: number, partition: number): string {
  return join(dir, `mr-${mapIndex}-${partition}`);
}

const chunkBytes = 1 << 20;

/** A map output that could not be read: its worker is presumed dead (paper 3.3). */
export class FetchError extends Error {
  constructor(
    readonly location: MapLocation,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Ends a server stream with an error status. grpc-js sends the status from the stream's
 * 'error' event; `destroy(error)` would end the stream without one, and the client would wait
 * for data until its idle timeout instead of learning at once that the output is gone.
 */
function fail(
  call: ServerWritableStream<FetchPartitionRequest, PartitionChunk>,
  code: status,
  details: string,
) {
  call.emit("error", { code, details, message: details } as ServiceError);
}

/** Serves this worker's map output files to reduce workers. */
export function shuffleService(dir: string): UntypedServiceImplementation {
  return {
    fetchPartition: async (call: ServerWritableStream<FetchPartitionRequest, PartitionChunk>) => {
      const { mapIndex, partition } = call.request;
      if (!Number.isInteger(mapIndex) || !Number.isInteger(partition) || mapIndex < 0 || partition < 0) {
        fail(call, status.INVALID_ARGUMENT, "bad map index or partition");
        return;
      }
      let data: Buffer;
      try {
        data = await readFile(mapOutputPath(dir, mapIndex, partition));
      } catch {
        fail(call, status.NOT_FOUND, `no output of map task ${mapIndex} for partition ${partition} here`);
        return;
      }
      for (let off = 0; off < data.length || off === 0; off += chunkBytes) {
        if (call.cancelled) return;
        const ok = call.write({ data: data.subarray(off, off + chunkBytes) });
        if (!ok) await new Promise<void>((r) => call.once("drain", r));
        if (data.length === 0) break;
      }
      call.end();
    },
  };
}

/** Reads a reduce task's partition of map outputs: its own from disk, others' over gRPC. */
export class ShuffleReader {
  private readonly clients = new Map<string, ShuffleClient>();

  constructor(
    private readonly workerId: string,
    private readonly dir: string,
    /** A fetch that receives nothing for this long counts as failed. */
    private readonly idleMs: number,
  ) {}

  /**
   * Map output this worker made is read from its own disk: asking its own shuffle service
   * would cost a gRPC round trip per file and, while this process computes, wait for itself.
   */
  async read(location: MapLocation, partition: number): Promise<Buffer> {
    if (location.workerId !== this.workerId) return this.fetch(location, partition);
    try {
      return await readFile(mapOutputPath(this.dir, location.mapIndex, partition));
    } catch (error) {
      throw new FetchError(location, `own map output unreadable: ${(error as Error).message}`);
    }
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(address: string): ShuffleClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = createGrpcClient(ShuffleClient, address, {});
      this.clients.set(address, client);
    }
    return client;
  }

  private fetch(location: MapLocation, partition: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = this.client(location.shuffleAddress).fetchPartition({
        mapIndex: location.mapIndex,
        partition,
      });
      let idle: NodeJS.Timeout;
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => stream.cancel(), this.idleMs);
      };
      arm();
      stream.on("data", (chunk: PartitionChunk) => {
        chunks.push(Buffer.from(chunk.data));
        arm();
      });
      stream.on("error", (error: Error) => {
        clearTimeout(idle);
        reject(new FetchError(location, error.message));
      });
      stream.on("end", () => {
        clearTimeout(idle);
        resolve(Buffer.concat(chunks));
      });
    });
  }
}
