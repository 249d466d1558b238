/** Test helpers. Import from `@quorum/transport/testing`. */
export { makeTestCa, type TestCa } from "./test-ca.js";
