/** Latencies recorded since the last `take()`, summarised per dashboard tick. */
export class LatencyWindow {
  private samples: number[] = [];
  private lastTake = performance.now();
  total = 0;

  record(ms: number): void {
    this.samples.push(ms);
    this.total++;
  }

  /** Operations per second and latency percentiles since the previous call. */
  take(): { opsPerSec: number; p50Ms: number; p99Ms: number; maxMs: number } {
    const now = performance.now();
    const seconds = Math.max((now - this.lastTake) / 1000, 1e-3);
    this.lastTake = now;
    const sorted = this.samples.sort((a, b) => a - b);
    this.samples = [];
    const at = (q: number) =>
      sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0;
    return {
      opsPerSec: sorted.length / seconds,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      maxMs: sorted.at(-1) ?? 0,
    };
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
