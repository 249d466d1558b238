import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));

it("committed generated protobuf code matches the .proto sources (run `pnpm gen` if not)", () => {
  const out = execFileSync("node", ["scripts/gen.mjs", "--check"], { cwd: root, encoding: "utf8" });
  expect(out).toMatch(/generated files are up to date/);
}, 60_000);
