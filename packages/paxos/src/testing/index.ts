export { CoreCluster, cmd, text } from "./core-cluster.js";
export { seededRandom } from "./prng.js";
