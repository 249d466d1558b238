import type { Clock, Timer } from "@quorum/transport";
import type { Scheduler } from "./scheduler.js";

/** The `Clock` a runtime sees in simulation: virtual time, timers as scheduler events. */
export class SimClock implements Clock {
  constructor(
    protected readonly scheduler: Scheduler,
    protected readonly label = "clock",
  ) {}

  now(): number {
    return this.scheduler.now();
  }

  schedule(delayMs: number, fn: () => void): Timer {
    return this.scheduler.schedule(delayMs, fn, this.label);
  }
}

/**
 * One node's view of the clock. `crash()` cancels every timer the node scheduled and makes
 * later `schedule` calls inert, so nothing a crashed incarnation left behind ever runs.
 */
export class NodeClock extends SimClock {
  private readonly timers = new Set<Timer>();
  private dead = false;

  override schedule(delayMs: number, fn: () => void): Timer {
    if (this.dead) return { cancel() {} };
    let timer: Timer | undefined;
    const inner = this.scheduler.schedule(
      delayMs,
      () => {
        if (timer) this.timers.delete(timer);
        fn();
      },
      this.label,
    );
    timer = {
      cancel: () => {
        inner.cancel();
        if (timer) this.timers.delete(timer);
      },
    };
    this.timers.add(timer);
    return timer;
  }

  /** Timers scheduled and not yet run or cancelled. */
  pendingTimers(): number {
    return this.timers.size;
  }

  isDead(): boolean {
    return this.dead;
  }

  crash(): void {
    this.dead = true;
    for (const t of [...this.timers]) t.cancel();
    this.timers.clear();
  }
}
