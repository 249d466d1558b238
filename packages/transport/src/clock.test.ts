import { describe, expect, it } from "vitest";
import { type Clock, every, type Timer } from "./clock.js";

/** A clock whose time moves only when the test says. */
function manualClock() {
  let now = 0;
  const timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  const clock: Clock = {
    now: () => now,
    schedule(delayMs, fn): Timer {
      const t = { at: now + delayMs, fn, cancelled: false };
      timers.push(t);
      return { cancel: () => (t.cancelled = true) };
    },
  };
  const advance = (ms: number) => {
    const until = now + ms;
    for (;;) {
      const due = timers.filter((t) => !t.cancelled && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.cancelled = true;
      now = due.at;
      due.fn();
    }
    now = until;
  };
  return { clock, advance };
}

describe("every", () => {
  it("runs every interval until cancelled, even after a throwing run", () => {
    const { clock, advance } = manualClock();
    const runs: number[] = [];
    const timer = every(clock, 10, () => {
      runs.push(clock.now());
      if (runs.length === 2) throw new Error("one bad run");
    });
    expect(() => advance(25)).toThrow("one bad run");
    advance(20);
    expect(runs).toEqual([10, 20, 30, 40]);
    timer.cancel();
    advance(50);
    expect(runs).toEqual([10, 20, 30, 40]);
  });
});
