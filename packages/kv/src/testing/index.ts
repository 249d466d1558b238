/** Test helpers. Import from `@quorum/kv/testing`. */

export { fencedMachine, fencedService, fencedStore } from "./fencing.js";
export { ManualClock } from "./manual-clock.js";
export type { ShardedSingleNodeKv } from "./sharded-single-node.js";
export { startShardedSingleNodeKv } from "./sharded-single-node.js";
export type { SingleNodeKv, SingleNodeKvOptions } from "./single-node.js";
export { startSingleNodeKv } from "./single-node.js";
