/** A scheduled callback; `cancel()` is idempotent and safe after it ran. */
export interface Timer {
  cancel(): void;
}

/**
 * Time as a node runtime sees it. Runtimes take a Clock instead of calling `Date.now` or
 * `setTimeout`, so the simulator can run them on virtual time (`@quorum/sim`).
 */
export interface Clock {
  /** Milliseconds on a monotonic clock; only differences are meaningful. */
  now(): number;
  /** Runs `fn` once, `delayMs` from now (0 = as soon as possible, after the current task). */
  schedule(delayMs: number, fn: () => void): Timer;
}

/** The real clock: `performance.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => performance.now(),
  schedule(delayMs, fn) {
    const handle = setTimeout(fn, Math.max(0, delayMs));
    return { cancel: () => clearTimeout(handle) };
  },
};

/**
 * Runs `fn` every `intervalMs` on `clock` (the next run is scheduled before `fn` runs, so a
 * throwing `fn` does not stop the series) until the returned timer is cancelled.
 */
export function every(clock: Clock, intervalMs: number, fn: () => void): Timer {
  let cancelled = false;
  let timer: Timer;
  const tick = () => {
    if (cancelled) return;
    timer = clock.schedule(intervalMs, tick);
    fn();
  };
  timer = clock.schedule(intervalMs, tick);
  return {
    cancel() {
      cancelled = true;
      timer.cancel();
    },
  };
}
