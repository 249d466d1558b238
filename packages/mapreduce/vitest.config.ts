import { defineProject } from "vitest/config";
import { quorumAliases } from "../../vitest.shared.js";

export default defineProject({
  resolve: { alias: quorumAliases },
  test: { name: "mapreduce", include: ["src/**/*.test.ts", "test/**/*.test.ts"] },
});
