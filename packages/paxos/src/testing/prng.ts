export { seededRandom } from "@quorum/transport";
