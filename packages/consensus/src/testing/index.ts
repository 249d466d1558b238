/** Test doubles and the conformance kit. Import from `@quorum/consensus/testing`. */
export type { ConformanceCase, ConformanceCluster, ConformanceHarness } from "./conformance.js";
export { conformanceCases, waitForLeader } from "./conformance.js";
export type { RecordedResult } from "./recording-machine.js";
export { RecordingStateMachine } from "./recording-machine.js";
export { SingleNodeLog } from "./single-node-log.js";
