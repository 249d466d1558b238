import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, type IOptions } from "etcd3";

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * The node did not answer (down, or cut off): another node may. A node that answers
 * UNAVAILABLE itself ("etcdserver: no leader" while a shard elects) is up and stays in use.
 */
const hostFailure = (err: unknown) =>
  (err instanceof GRPCUnavailableError && !err.message.includes("etcdserver:")) ||
  err instanceof GRPCDeadlineExceededError;

export class HostDownError extends Error {
  constructor() {
    super("skipped: this node failed several calls in a row");
  }
}

/**
 * A per-node circuit breaker that opens on transport failures only. etcd3's default one also
 * counts ABORTED as a failure, and a Txn over several shards answers ABORTED when it met
 * locks on every attempt: three such conflicts in a row would shut a healthy node out for
 * 5 s. A blocked call never reaches the node, and etcd3 tries the next one.
 */
export class HostBreaker {
  private failures = 0;
  private openUntil = 0;

  constructor(
    private readonly threshold = 3,
    private readonly openMs = 2000,
    private readonly now: () => number = Date.now,
  ) {}

  async execute<T>(fn: () => Promise<T>): Promise<T> {
    if (this.now() < this.openUntil) throw new HostDownError();
    try {
      const result = await fn();
      this.failures = 0;
      return result;
    } catch (err) {
      if (!hostFailure(err)) this.failures = 0;
      else if (++this.failures >= this.threshold) {
        this.openUntil = this.now() + this.openMs;
        // Half open afterwards: one more failure opens it again.
        this.failures = this.threshold - 1;
      }
      throw err;
    }
  }
}

/**
 * Retries a call answered UNAVAILABLE (its node is down, or a shard is electing), after a
 * short pause, on the next node (etcd3 walks one shuffled order of the nodes across retries);
 * anything else, ABORTED included, goes to the workload, which counts it. Retrying is safe for
 * the demo's requests: puts of the same value, reads, and Txns guarded by mod revisions.
 */
const retryUnavailable = {
  async execute<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof GRPCUnavailableError) || attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** (attempt - 1)));
      }
    }
  },
};

/** The demo's etcd client over every node, with a deadline on each call. */
export function demoClient(endpoints: readonly string[], callTimeoutMs = 3000): Etcd3 {
  return new Etcd3({
    hosts: endpoints.map((e) => `http://${e}`),
    dialTimeout: 1000,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () => new HostBreaker() as unknown as Policy,
      global: retryUnavailable as unknown as Policy,
    },
  });
}
