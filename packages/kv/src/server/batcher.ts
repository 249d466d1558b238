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
      /**
       * The log's `proposeBatch` commits all of a batch or none of it (SingleNodeLog applies
       * it in one transaction), so one `proposeBatch` per batch settles every entry right.
       */
      readonly atomicProposeBatch?: boolean;
      /**
       * Carries a batch in one log entry: `encode` makes the entry of several commands,
       * `split` gives each command its result from the entry's (or throws if it has none).
       */
      readonly merge?: {
        readonly encode: (commands: readonly Uint8Array[]) => Uint8Array;
        readonly split: (result: R, count: number) => readonly R[];
        /** A batch entry's size limit: larger batches are split. */
        readonly maxBytes: number;
      };
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
    const maxBytes = this.options.merge?.maxBytes ?? Number.POSITIVE_INFINITY;
    while (this.queue.length > 0) {
      let n = 0;
      let bytes = 0;
      while (
        n < this.queue.length &&
        n < max &&
        (n === 0 || bytes + this.queue[n]!.command.length <= maxBytes)
      )
        bytes += this.queue[n++]!.command.length;
      const batch = this.queue.splice(0, n);
      this.options.onBatch?.(batch.length);
      if (this.options.merge && batch.length > 1) this.proposeMerged(batch, this.options.merge);
      else this.propose(batch);
    }
  }

  /** One entry for the whole batch: it commits or fails as one, and each request gets its own result. */
  private proposeMerged(batch: Pending<R>[], merge: NonNullable<typeof this.options.merge>): void {
    const options: ProposeOptions =
      this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {};
    let proposed: Promise<{ readonly result: R }>;
    try {
      proposed = this.log.propose(merge.encode(batch.map((p) => p.command)), options);
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    proposed
      .then((r) => {
        const results = merge.split(r.result, batch.length);
        if (results.length !== batch.length)
          throw new Error(`a batch of ${batch.length} commands got ${results.length} results`);
        return results;
      })
      .then(
        (results) => {
          for (const [i, p] of batch.entries()) p.resolve(results[i]!);
        },
        (err: unknown) => {
          for (const p of batch) p.reject(err);
        },
      );
  }

  /**
   * Settles each request by its own entry's outcome: in a batch, one entry can fail (its
   * timeout fires, or a new leader overwrote it) while the others commit, and those must
   * report success. So this does not use `proposeBatch`, whose single promise (Promise.all
   * in Raft and Paxos) rejects the whole batch on the first failed entry. It proposes each
   * entry in one synchronous loop instead: Raft (a microtask) and Paxos (a zero-delay timer)
   * queue proposals and append everything queued in one turn together, so the batch still
   * reaches the log, the followers and the fsync as one append. A log whose `proposeBatch`
   * is all or nothing (`atomicProposeBatch`) gets the batch in one call.
   */
  private propose(batch: Pending<R>[]): void {
    const options: ProposeOptions = {
      ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
    };
    if (this.options.atomicProposeBatch && this.log.proposeBatch) {
      let proposed: Promise<readonly { readonly result: R }[]>;
      try {
        proposed = this.log.proposeBatch(
          batch.map((p) => p.command),
          options,
        );
      } catch (err) {
        for (const p of batch) p.reject(err);
        return;
      }
      proposed.then(
        (results) => {
          for (const [i, p] of batch.entries()) p.resolve(results[i]!.result);
        },
        (err: unknown) => {
          for (const p of batch) p.reject(err);
        },
      );
      return;
    }
    for (const p of batch) {
      let proposed: Promise<{ readonly result: R }>;
      try {
        proposed = this.log.propose(p.command, options);
      } catch (err) {
        p.reject(err);
        continue;
      }
      proposed.then((r) => p.resolve(r.result), p.reject);
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
