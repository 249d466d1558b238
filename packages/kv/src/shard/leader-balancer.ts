import type { ReplicatedLog } from "@quorum/consensus";
import { type Clock, every, type Logger, type Timer } from "@quorum/transport";

/**
 * Spreads shard leadership over the nodes. Elections put leaders wherever timers fired
 * first, often all on one node, which then does every shard's leader work alone (proposals,
 * fsyncs, replication) while the others idle. Every `intervalMs`, a node that leads at least
 * two shards more than the member leading the fewest hands one of them to that member
 * (`transferLeadership`). Only leaders act and each moves one shard per round, so the
 * counts converge without two nodes fighting over a shard; a transfer that fails (the
 * target is behind or down) is simply tried again later.
 */
export class LeaderBalancer {
  private readonly timer: Timer;
  private moving = false;
  private closed = false;

  constructor(
    private readonly logs: readonly ReplicatedLog<unknown>[],
    private readonly options: { clock: Clock; intervalMs: number; logger?: Logger },
  ) {
    this.timer = every(options.clock, options.intervalMs, () => void this.balanceOnce());
  }

  /** One round; resolves with the shard handed over, if any. */
  async balanceOnce(): Promise<{ shard: number; to: string } | undefined> {
    if (this.moving || this.closed) return undefined;
    const statuses = this.logs.map((l) => l.status());
    const me = statuses[0]?.nodeId;
    const counts = new Map<string, number>();
    for (const m of statuses[0]?.members ?? []) if (!m.learner) counts.set(m.id, 0);
    for (const s of statuses) {
      if (s.leaderId === undefined) return undefined; // an election is on: wait for it
      counts.set(s.leaderId, (counts.get(s.leaderId) ?? 0) + 1);
    }
    if (me === undefined) return undefined;
    const mine = counts.get(me) ?? 0;
    let target: string | undefined;
    for (const [id, n] of [...counts].sort(([a], [b]) => a.localeCompare(b))) {
      if (id !== me && (target === undefined || n < counts.get(target)!)) target = id;
    }
    if (target === undefined || mine - counts.get(target)! < 2) return undefined;
    let shard = -1;
    for (let i = statuses.length - 1; i >= 0; i--)
      if (statuses[i]!.role === "leader") {
        shard = i;
        break;
      }
    const log = this.logs[shard];
    if (!log?.transferLeadership) return undefined;
    this.moving = true;
    try {
      await log.transferLeadership(target, { timeoutMs: 2_000 });
      this.options.logger?.info({ shard, to: target }, "handed shard leadership over to balance the nodes");
      return { shard, to: target };
    } catch (err) {
      this.options.logger?.debug(
        { shard, to: target, err: String(err) },
        "leadership hand-over failed; will retry",
      );
      return undefined;
    } finally {
      this.moving = false;
    }
  }

  close(): void {
    this.closed = true;
    this.timer.cancel();
  }
}
