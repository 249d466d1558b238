import type { ProposeOptions, ReplicatedLog } from "@quorum/consensus";

interface Pending<R> {
  readonly command: Uint8Array;
  readonly resolve: (result: R) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Collects the commands of all requests that arrive in one turn of the event loop and
 * proposes them as one batch: gRPC delivers many calls per socket read, and the log then
 * appends, replicates and fsyncs them together instead of once per request.
 */
export class ProposalBatcher<R> {
  private queue: Pending<R>[] = [];
  private scheduled = false;

  constructor(
    private readonly log: ReplicatedLog<R>,
    private readonly options: ProposeOptions & {
      readonly maxBatch?: number;
      readonly onBatch?: (size: number) => void;
    } = {},
  ) {}

  submit(command: Uint8Array): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ command, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const max = this.options.maxBatch ?? 1024;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, max);
      this.options.onBatch?.(batch.length);
      void this.propose(batch);
    }
  }

  private async propose(batch: Pending<R>[]): Promise<void> {
    const options: ProposeOptions = {
      ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
    };
    try {
      if (this.log.proposeBatch) {
        const results = await this.log.proposeBatch(
          batch.map((p) => p.command),
          options,
        );
        for (const [i, p] of batch.entries()) p.resolve(results[i]!.result);
      } else {
        await Promise.all(
          batch.map((p) => this.log.propose(p.command, options).then((r) => p.resolve(r.result), p.reject)),
        );
      }
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }
}

/**
 * Shares one ReadIndex round among the linearizable reads that arrive in one turn of the
 * event loop. A read joins only a barrier that starts after it arrived (the one already in
 * flight may predate a write it must see).
 */
export class ReadBarrier {
  private next: Promise<void> | undefined;

  constructor(
    private readonly log: Pick<ReplicatedLog, "read">,
    private readonly options: ProposeOptions = {},
  ) {}

  wait(): Promise<void> {
    if (!this.next) {
      this.next = new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          this.next = undefined;
          this.log.read(this.options).then(() => resolve(), reject);
        });
      });
    }
    return this.next;
  }
}
