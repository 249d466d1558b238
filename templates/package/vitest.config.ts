import { defineProject } from "vitest/config";
import { quorumAliases } from "../../vitest.shared.js";

export default defineProject({
  resolve: { alias: quorumAliases },
  test: { name: "__name__", include: ["src/**/*.test.ts", "test/**/*.test.ts"] },
});
