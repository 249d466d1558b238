import { describe, expect, it } from "vitest";
import { Scheduler, SchedulerLimitError } from "./scheduler.js";
import { NodeClock, SimClock } from "./sim-clock.js";

describe("Scheduler", () => {
  it("runs events by time, and by scheduling order at equal times", async () => {
    const s = new Scheduler();
    const order: string[] = [];
    s.schedule(10, () => order.push("b"));
    s.schedule(5, () => order.push("a"));
    s.schedule(10, () => order.push("c"));
    s.schedule(0, () => order.push("first"));
    await s.runUntilIdle();
    expect(order).toEqual(["first", "a", "b", "c"]);
    expect(s.now()).toBe(10);
  });

  it("runUntilTime runs due events only and advances the clock", async () => {
    const s = new Scheduler();
    const ran: number[] = [];
    for (const t of [5, 15, 25]) s.schedule(t, () => ran.push(s.now()));
    await s.runUntilTime(20);
    expect(ran).toEqual([5, 15]);
    expect(s.now()).toBe(20);
    await s.runFor(10);
    expect(ran).toEqual([5, 15, 25]);
    expect(s.now()).toBe(30);
  });

  it("cancelled timers never run", async () => {
    const s = new Scheduler();
    let ran = false;
    const t = s.schedule(5, () => {
      ran = true;
    });
    t.cancel();
    t.cancel();
    await s.runUntilIdle();
    expect(ran).toBe(false);
  });

  it("runUntil stops when the predicate holds, or at maxTime", async () => {
    const s = new Scheduler();
    let n = 0;
    const tick = () => {
      n++;
      s.schedule(10, tick);
    };
    s.schedule(10, tick);
    expect(await s.runUntil(() => n === 3, 1000)).toBe(true);
    expect(s.now()).toBe(30);
    expect(await s.runUntil(() => n === 1000, 200)).toBe(false);
    expect(s.now()).toBe(200);
  });

  it("drains promise continuations after each event, before the next one", async () => {
    const s = new Scheduler();
    const log: string[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const deep = async (depth: number): Promise<void> => {
      if (depth > 0) await deep(depth - 1);
      else await gate;
    };
    void (async () => {
      await deep(200);
      await null;
      log.push("continuation");
    })();
    s.schedule(1, () => {
      log.push("event 1");
      release();
    });
    s.schedule(1, () => log.push("event 2"));
    await s.runUntilIdle();
    expect(log).toEqual(["event 1", "continuation", "event 2"]);
  });

  it("refuses two concurrent run loops and bounds livelock", async () => {
    const s = new Scheduler({ maxSteps: 100 });
    const loop = () => s.schedule(0, loop);
    loop();
    const a = s.runUntilTime(10);
    await expect(s.runUntilTime(10)).rejects.toThrow(/already running/);
    await expect(a).rejects.toThrow(SchedulerLimitError);
  });

  it("propagates an event's exception and step hooks run after each step", async () => {
    const s = new Scheduler();
    const seen: number[] = [];
    s.afterStep(({ step }) => seen.push(step));
    s.schedule(1, () => {});
    s.schedule(2, () => {
      throw new Error("boom");
    });
    await expect(s.runUntilIdle()).rejects.toThrow("boom");
    expect(seen).toEqual([1]);
  });
});

describe("SimClock and NodeClock", () => {
  it("implement Clock on virtual time", async () => {
    const s = new Scheduler();
    const clock = new SimClock(s);
    let at = -1;
    clock.schedule(7, () => {
      at = clock.now();
    });
    await s.runUntilIdle();
    expect(at).toBe(7);
  });

  it("a crashed node's timers never fire, including ones it schedules afterwards", async () => {
    const s = new Scheduler();
    const clock = new NodeClock(s, "n1");
    const fired: string[] = [];
    clock.schedule(5, () => fired.push("before"));
    clock.schedule(50, () => fired.push("late"));
    const periodic = () => {
      fired.push("tick");
      clock.schedule(10, periodic);
    };
    clock.schedule(10, periodic);
    await s.runUntilTime(25);
    expect(clock.pendingTimers()).toBe(2);
    clock.crash();
    expect(clock.pendingTimers()).toBe(0);
    clock.schedule(1, () => fired.push("zombie"));
    await s.runUntilTime(1000);
    expect(fired).toEqual(["before", "tick", "tick"]);
    expect(s.pending()).toBe(0);
  });
});
