import type { Clock } from "@quorum/transport";
import type { DiskOptions } from "./disk.js";
import { type NetworkOptions, SimNetwork } from "./network.js";
import { normalizeSeed, Prng } from "./prng.js";
import { Scheduler } from "./scheduler.js";
import { SimClock } from "./sim-clock.js";

/**
 * A check run after every scheduler step. Return a message (or throw) when it is violated;
 * return nothing when it holds. Checks must only read state: they run between events.
 */
export type InvariantCheck = () => string | undefined;

export class InvariantViolation extends Error {
  override readonly name = "InvariantViolation";
  constructor(
    readonly invariant: string,
    readonly time: number,
    readonly step: number,
    detail: string,
  ) {
    super(`invariant "${invariant}" violated at t=${time}ms (step ${step}): ${detail}`);
  }
}

/** Thrown by `eventually` when the expected progress did not happen in time. */
export class LivenessFailure extends Error {
  override readonly name = "LivenessFailure";
}

export interface SimulationOptions {
  network?: NetworkOptions;
  disk?: DiskOptions;
  /** Record every event's label in `scheduler.trace`. */
  trace?: boolean;
  /** Events per run call before giving up (a livelock guard). */
  maxSteps?: number;
}

/**
 * One simulated world for one seed: the PRNG, the scheduler (virtual time), the network, the
 * invariant checks. Each component draws from its own fork of the seed's PRNG.
 */
export class Simulation {
  readonly seed: number;
  readonly prng: Prng;
  readonly scheduler: Scheduler;
  readonly network: SimNetwork;
  /** A clock that belongs to no node (for test drivers and clients). */
  readonly clock: Clock;
  readonly diskOptions: DiskOptions;
  private readonly invariants: { name: string; check: InvariantCheck }[] = [];
  private failure: unknown;

  constructor(seed: number, options: SimulationOptions = {}) {
    this.seed = normalizeSeed(seed);
    this.prng = new Prng(this.seed);
    this.scheduler = new Scheduler({
      ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
      trace: options.trace ?? false,
    });
    this.network = new SimNetwork(this.scheduler, this.prng.fork("network"), options.network);
    this.clock = new SimClock(this.scheduler, "driver");
    this.diskOptions = options.disk ?? {};
    this.scheduler.afterStep(({ time, step }) => {
      if (this.failure !== undefined) {
        const err = this.failure;
        this.failure = undefined;
        throw err;
      }
      for (const { name, check } of this.invariants) {
        let detail: string | undefined;
        try {
          detail = check();
        } catch (e) {
          detail = e instanceof Error ? e.message : String(e);
        }
        if (detail !== undefined) throw new InvariantViolation(name, time, step, detail);
      }
    });
  }

  now(): number {
    return this.scheduler.now();
  }

  /** Registers a check run after every step (e.g. Raft's election safety). */
  addInvariant(name: string, check: InvariantCheck): void {
    this.invariants.push({ name, check });
  }

  /** Runs every invariant once now (e.g. at the end of a scenario). */
  checkInvariants(): void {
    for (const { name, check } of this.invariants) {
      const detail = check();
      if (detail !== undefined)
        throw new InvariantViolation(name, this.now(), this.scheduler.stepCount(), detail);
    }
  }

  /**
   * Records an error raised where it cannot be thrown to the run loop (a rejected promise of
   * a runtime, a failed restart); the run stops with it after the current step.
   */
  fail(error: unknown): void {
    if (this.failure === undefined) this.failure = error;
  }

  runFor(ms: number): Promise<void> {
    return this.scheduler.runFor(ms);
  }

  runUntilTime(time: number): Promise<void> {
    return this.scheduler.runUntilTime(time);
  }

  runUntil(predicate: () => boolean, maxTime: number): Promise<boolean> {
    return this.scheduler.runUntil(predicate, maxTime);
  }

  /**
   * For the liveness phase: runs until `predicate` holds, and throws a LivenessFailure naming
   * `what` if it does not within `withinMs` of virtual time.
   */
  async eventually(what: string, predicate: () => boolean, withinMs: number): Promise<void> {
    const start = this.now();
    if (!(await this.scheduler.runUntil(predicate, start + withinMs))) {
      throw new LivenessFailure(
        `no progress: "${what}" did not happen within ${withinMs}ms (from t=${start}ms)`,
      );
    }
  }

  runUntilIdle(maxTime?: number): Promise<boolean> {
    return this.scheduler.runUntilIdle(maxTime);
  }

  step(): Promise<boolean> {
    return this.scheduler.step();
  }
}
