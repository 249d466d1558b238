export { seededRandom } from "@quorum/transport";
export { CoreCluster, type CoreClusterOptions, type CoreNode, type RaftOverrides } from "./core-cluster.js";
export { type NodeView, SafetyChecker, SafetyViolation } from "./safety.js";
export { type DiskFile, SimDiskLogStore, type SimDiskLogStoreOptions } from "./sim-disk-log-store.js";
