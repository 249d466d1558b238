/** Test helpers. Import from `@quorum/kv/testing`. */
export { ManualClock } from "./manual-clock.js";
export type { SingleNodeKv, SingleNodeKvOptions } from "./single-node.js";
export { startSingleNodeKv } from "./single-node.js";
