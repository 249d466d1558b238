/** Test helpers. Import from `@quorum/kv/testing`. */
export type { SingleNodeKv } from "./single-node.js";
export { startSingleNodeKv } from "./single-node.js";
