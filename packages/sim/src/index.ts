export { type DiskCounters, type DiskOptions, SimDisk, type SimFile } from "./disk.js";
export {
  formatOperation,
  History,
  type KvInput,
  type KvOutput,
  type Operation,
  type Value,
} from "./history.js";
export { type CheckOptions, type CheckResult, checkLinearizability } from "./linearizability.js";
export {
  type NetworkCounters,
  type NetworkFaults,
  type NetworkOptions,
  NO_FAULTS,
  SimNetwork,
  type TraceEvent,
  type TraceKind,
} from "./network.js";
export {
  Nemesis,
  type NemesisOptions,
  type NodeContext,
  type NodeFactory,
  SimCluster,
} from "./node-host.js";
export { normalizeSeed, Prng } from "./prng.js";
export {
  type RunSeedsOptions,
  type RunSeedsResult,
  runSeeds,
  type Scenario,
  type ScenarioContext,
  SeedFailure,
  seedCount,
} from "./runner.js";
export {
  flushMicrotasks,
  Scheduler,
  SchedulerLimitError,
  type SimTimer,
  type StepHook,
} from "./scheduler.js";
export { NodeClock, SimClock } from "./sim-clock.js";
export {
  type InvariantCheck,
  InvariantViolation,
  LivenessFailure,
  Simulation,
  type SimulationOptions,
} from "./simulation.js";
