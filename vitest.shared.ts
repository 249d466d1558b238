import { fileURLToPath } from "node:url";

const packagesDir = fileURLToPath(new URL("./packages/", import.meta.url));

/**
 * Tests import packages by their public names but read the sources, so a test run
 * needs no build of the package under test (as tRPC's root vitest config does).
 */
export const quorumAliases = [
  { find: /^@quorum\/([a-z-]+)\/testing$/, replacement: `${packagesDir}$1/src/testing/index.ts` },
  { find: /^@quorum\/([a-z-]+)$/, replacement: `${packagesDir}$1/src/index.ts` },
];
