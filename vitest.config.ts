import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*", "test"],
    reporters: ["default", "./scripts/totals-reporter.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
