import type { ReplicatedLog } from "@quorum/consensus";
import type { Clock, Logger, Timer } from "@quorum/transport";
import type { KvStore } from "../store/kv-store.js";

export interface LessorOptions {
  readonly log: Pick<ReplicatedLog, "status" | "subscribe">;
  readonly store: KvStore;
  readonly clock: Clock;
  /** Proposes the revoke of an expired lease through the log. */
  readonly revoke: (id: bigint) => Promise<void>;
  /** How often the leader looks for expired leases (etcd: 500 ms). */
  readonly checkIntervalMs?: number;
  /**
   * Added to every lease's TTL when this node becomes leader (etcd: one election timeout),
   * so that a failover does not expire leases whose keep-alives were going to the old leader.
   */
  readonly leaderExtendMs?: number;
  readonly logger?: Logger;
}

/**
 * The leader's view of lease expiry (etcd's lessor as primary). Leases themselves (ID, TTL,
 * attached keys) are replicated state in the store; when each one expires is known only to
 * the current leader, in memory: keep-alives refresh it without going through the log, and
 * an expired lease is revoked by proposing a revoke, so every replica deletes its keys at the
 * same revision. A new leader starts every lease over at its full TTL plus `leaderExtendMs`.
 */
export class Lessor {
  private readonly expiries = new Map<bigint, number>();
  private readonly revoking = new Set<bigint>();
  private leading = false;
  private timer: Timer | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;
  private readonly checkIntervalMs: number;
  private readonly leaderExtendMs: number;

  constructor(private readonly options: LessorOptions) {
    this.checkIntervalMs = options.checkIntervalMs ?? 500;
    this.leaderExtendMs = options.leaderExtendMs ?? 1000;
  }

  start(): void {
    this.unsubscribe = this.options.log.subscribe((event) => {
      if (event.type === "roleChanged" || event.type === "leaderChanged") this.checkRole();
    });
    this.checkRole();
  }

  isLeader(): boolean {
    this.checkRole();
    return this.leading;
  }

  private checkRole(): void {
    if (this.closed) return;
    const leading = this.options.log.status().role === "leader";
    if (leading && !this.leading) {
      const at = this.options.clock.now() + this.leaderExtendMs;
      this.expiries.clear();
      for (const lease of this.options.store.leases()) this.expiries.set(lease.id, at + lease.ttl * 1000);
      this.options.logger?.info({ leases: this.expiries.size }, "lessor promoted: lease TTLs restarted");
    } else if (!leading && this.leading) {
      this.expiries.clear();
      this.timer?.cancel();
      this.timer = undefined;
    }
    this.leading = leading;
    // Only the leader looks for expired leases.
    if (leading && !this.timer) this.schedule();
  }

  /** When `id` expires on this leader's clock; a lease not seen before starts its TTL now. */
  private expiry(id: bigint, ttl: number): number {
    let at = this.expiries.get(id);
    if (at === undefined) {
      at = this.options.clock.now() + ttl * 1000;
      this.expiries.set(id, at);
    }
    return at;
  }

  /** A grant this leader just applied: its TTL starts now. */
  granted(id: bigint, ttl: number): void {
    if (this.leading) this.expiries.set(id, this.options.clock.now() + ttl * 1000);
  }

  /**
   * etcd's Renew on the leader: the granted TTL, or 0 when the lease is unknown or already
   * expired (its revoke is on the way).
   */
  renew(id: bigint): number {
    const lease = this.options.store.lease(id);
    if (!lease) return 0;
    const now = this.options.clock.now();
    if (this.expiry(id, lease.ttl) <= now) return 0;
    this.expiries.set(id, now + lease.ttl * 1000);
    return lease.ttl;
  }

  /** Remaining whole seconds (etcd truncates), or undefined for an unknown lease. */
  remaining(id: bigint): { ttl: number; granted: number } | undefined {
    const lease = this.options.store.lease(id);
    if (!lease) return undefined;
    const left = this.expiry(id, lease.ttl) - this.options.clock.now();
    return { ttl: Math.max(0, Math.floor(left / 1000)), granted: lease.ttl };
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = this.options.clock.schedule(this.checkIntervalMs, () => {
      this.timer = undefined;
      try {
        this.expire();
      } catch (err) {
        // The store went away under us (shutdown): nothing left to expire.
        this.options.logger?.warn({ err: String(err) }, "lease expiry check failed; lessor stopped");
        this.close();
        return;
      }
      if (this.leading && !this.timer) this.schedule();
    });
  }

  /** Proposes a revoke for every expired lease (once at a time per lease; retried if it fails). */
  expire(): void {
    this.checkRole();
    if (!this.leading) return;
    const now = this.options.clock.now();
    const live = new Set<bigint>();
    for (const lease of this.options.store.leases()) {
      live.add(lease.id);
      if (this.expiry(lease.id, lease.ttl) > now || this.revoking.has(lease.id)) continue;
      this.revoking.add(lease.id);
      this.options.logger?.info({ lease: lease.id.toString(16) }, "lease expired; revoking");
      this.options.revoke(lease.id).then(
        () => this.revoking.delete(lease.id),
        (err: unknown) => {
          this.revoking.delete(lease.id);
          this.options.logger?.warn(
            { lease: lease.id.toString(16), err: String(err) },
            "lease revoke failed",
          );
        },
      );
    }
    for (const id of this.expiries.keys()) if (!live.has(id)) this.expiries.delete(id);
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.unsubscribe?.();
    this.expiries.clear();
  }
}
