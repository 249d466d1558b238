import { TransportError } from "./transport.js";

/** How long to wait between reconnect attempts. */
export interface BackoffOptions {
  /** Delay before the first retry. */
  initialMs: number;
  /** Upper bound of the delay before jitter. */
  maxMs: number;
  /** Growth factor per failed attempt. */
  multiplier: number;
  /**
   * Fraction of the delay randomized in both directions (0.2 = ±20%), so that peers that
   * lost a node at the same moment do not all redial it in lockstep.
   */
  jitter: number;
}

export const defaultBackoff: BackoffOptions = { initialMs: 100, maxMs: 5_000, multiplier: 2, jitter: 0.2 };

export function validateBackoff(options: BackoffOptions): void {
  const { initialMs, maxMs, multiplier, jitter } = options;
  if (!(initialMs > 0) || !(maxMs >= initialMs) || !(multiplier >= 1) || !(jitter >= 0 && jitter <= 1)) {
    throw new TransportError(
      "INVALID_CONFIG",
      `invalid backoff ${JSON.stringify(options)}: need initialMs > 0, maxMs >= initialMs, multiplier >= 1, 0 <= jitter <= 1`,
    );
  }
}

/** Exponential backoff with jitter; `reset()` after a connection succeeds. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number,
  ) {
    validateBackoff(options);
  }

  /** The delay before the next attempt; each call counts as one more failure. */
  next(): number {
    const { initialMs, maxMs, multiplier, jitter } = this.options;
    const base = Math.min(maxMs, initialMs * multiplier ** this.attempt);
    this.attempt++;
    const spread = base * jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(base + spread));
  }

  reset(): void {
    this.attempt = 0;
  }
}
