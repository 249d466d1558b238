/**
 * A discrete-event scheduler over virtual time (milliseconds).
 *
 * Events are ordered by (time, sequence number); the sequence number is taken when the event
 * is scheduled, so events at the same virtual time run in the order they were scheduled and
 * a run depends on nothing but the seed.
 *
 * Microtasks: node runtimes use async/await, so an event's callback usually leaves promise
 * continuations behind (a message handler resolves a promise, an awaiting function resumes).
 * After every event the scheduler awaits one `setImmediate` turn. Node runs the whole
 * microtask queue, including microtasks queued by microtasks, before any macrotask, so when
 * that turn arrives every continuation the event caused has run to its next real suspension
 * point (which in a simulation is always a virtual timer, a simulated message or a promise
 * that another event resolves). The order in which V8 runs microtasks is FIFO and does not
 * depend on wall time, so the interleaving is the same on every run of a seed. Nothing in the
 * simulation does real I/O, so the setImmediate turn never lets anything else touch sim state.
 */

/** A scheduled callback; `cancel()` is idempotent and safe after it ran. */
export interface SimTimer {
  cancel(): void;
}

interface Event {
  readonly time: number;
  readonly seq: number;
  readonly fn: () => void;
  readonly label: string;
  cancelled: boolean;
}

/** Runs after every step; throw to stop the run (invariant checks do). */
export type StepHook = (info: { time: number; label: string; step: number }) => void;

export class SchedulerLimitError extends Error {
  override readonly name = "SchedulerLimitError";
}

function before(a: Event, b: Event): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

/** Lets every pending promise continuation run; see the module comment. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class Scheduler {
  private nowMs = 0;
  private nextSeq = 0;
  private steps = 0;
  private readonly heap: Event[] = [];
  private readonly hooks: StepHook[] = [];
  private running = false;
  /** Set to record the label of every event run (for determinism checks and debugging). */
  trace: string[] | undefined;
  /** Upper bound on events per run call: a livelocked protocol fails loudly instead of hanging. */
  maxSteps: number;

  constructor(options: { maxSteps?: number; trace?: boolean } = {}) {
    this.maxSteps = options.maxSteps ?? 10_000_000;
    if (options.trace) this.trace = [];
  }

  now(): number {
    return this.nowMs;
  }

  /** Number of events run so far. */
  stepCount(): number {
    return this.steps;
  }

  /** Events still queued (cancelled ones included until they reach the head). */
  pending(): number {
    return this.heap.length;
  }

  /** Runs `fn` at `now + delayMs` (clamped to >= 0). */
  schedule(delayMs: number, fn: () => void, label = "timer"): SimTimer {
    if (Number.isNaN(delayMs)) throw new RangeError(`schedule(${delayMs}): delay is NaN`);
    return this.at(this.nowMs + Math.max(0, delayMs), fn, label);
  }

  /** Runs `fn` at virtual time `time` (never in the past). */
  at(time: number, fn: () => void, label = "timer"): SimTimer {
    const event: Event = {
      time: Math.max(time, this.nowMs),
      seq: this.nextSeq++,
      fn,
      label,
      cancelled: false,
    };
    this.push(event);
    return {
      cancel: () => {
        event.cancelled = true;
      },
    };
  }

  /** Registers a check run after every step; returns a function that removes it. */
  afterStep(hook: StepHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** Time of the next live event, or undefined when the queue is empty. */
  peekTime(): number | undefined {
    this.dropCancelledHead();
    return this.heap[0]?.time;
  }

  /**
   * Runs the next event, then lets the promise continuations it caused run, then the step
   * hooks. Returns false when there was nothing to run.
   */
  async step(): Promise<boolean> {
    this.dropCancelledHead();
    const event = this.pop();
    if (event === undefined) return false;
    this.nowMs = event.time;
    this.steps++;
    this.trace?.push(`${event.time} ${event.label}`);
    event.fn();
    await flushMicrotasks();
    for (const hook of this.hooks) hook({ time: this.nowMs, label: event.label, step: this.steps });
    return true;
  }

  /** Runs every event due at or before `time`, then advances the clock to `time`. */
  async runUntilTime(time: number): Promise<void> {
    await this.guard(async () => {
      let budget = this.maxSteps;
      for (let t = this.peekTime(); t !== undefined && t <= time; t = this.peekTime()) {
        if (budget-- <= 0)
          throw new SchedulerLimitError(`more than ${this.maxSteps} events before t=${time}`);
        await this.step();
      }
      if (time > this.nowMs) this.nowMs = time;
    });
  }

  /** Runs for `ms` of virtual time from now. */
  runFor(ms: number): Promise<void> {
    return this.runUntilTime(this.nowMs + ms);
  }

  /**
   * Runs events until `predicate()` holds (checked before each step and after it), or until
   * virtual time would pass `maxTime`. Returns whether the predicate held.
   */
  async runUntil(predicate: () => boolean, maxTime: number): Promise<boolean> {
    return this.guard(async () => {
      let budget = this.maxSteps;
      while (!predicate()) {
        const t = this.peekTime();
        if (t === undefined || t > maxTime) {
          if (maxTime > this.nowMs && Number.isFinite(maxTime)) this.nowMs = maxTime;
          return predicate();
        }
        if (budget-- <= 0) throw new SchedulerLimitError(`more than ${this.maxSteps} events in runUntil`);
        await this.step();
      }
      return true;
    });
  }

  /** Runs until no events remain (or `maxTime`); returns true when the queue drained. */
  async runUntilIdle(maxTime = Number.POSITIVE_INFINITY): Promise<boolean> {
    await this.runUntil(() => this.peekTime() === undefined, maxTime);
    return this.peekTime() === undefined;
  }

  /** Two concurrent run loops would interleave events nondeterministically; refuse it. */
  private async guard<T>(body: () => Promise<T>): Promise<T> {
    if (this.running) throw new Error("Scheduler is already running (a run call was not awaited)");
    this.running = true;
    try {
      return await body();
    } finally {
      this.running = false;
    }
  }

  private dropCancelledHead(): void {
    while (this.heap.length > 0 && this.heap[0]?.cancelled) this.pop();
  }

  private push(event: Event): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent] as Event)) break;
      heap[i] = heap[parent] as Event;
      i = parent;
    }
    heap[i] = event;
  }

  private pop(): Event | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && before(heap[r] as Event, heap[l] as Event) ? r : l;
      if (!before(heap[child] as Event, last)) break;
      heap[i] = heap[child] as Event;
      i = child;
    }
    heap[i] = last;
    return top;
  }
}
