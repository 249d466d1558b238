import { execFileSync, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `pnpm new-package` runs in a temporary copy of the working tree (tracked and untracked,
// not ignored files: what a clone with the current changes would hold), with the original
// node_modules linked in, so nothing is created in the repository itself.
const root = fileURLToPath(new URL("..", import.meta.url));
let copy: string;

function inCopy(command: string, args: string[], cwd = copy) {
  return spawnSync(command, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1", FORCE_COLOR: "0", NO_COLOR: "1" },
    timeout: 60_000,
  });
}

function newPackage(...args: string[]) {
  return inCopy(process.execPath, ["scripts/new-package.mjs", ...args, "--no-install"]);
}

/** The working tree's files: tracked and untracked but not ignored; without git, a walk that skips build output. */
function workingTreeFiles(): string[] {
  try {
    return execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    })
      .split("\0")
      .filter((f) => f !== "" && existsSync(join(root, f)));
  } catch {
    const skipAnywhere = new Set(["node_modules", "dist", ".turbo", ".git", "coverage"]);
    const skipAtRoot = new Set([".tools", ".tmp", "data"]);
    const walk = (dir: string): string[] =>
      readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
        const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
        if (skipAnywhere.has(entry.name) || (dir === "" && skipAtRoot.has(entry.name))) return [];
        return entry.isDirectory() ? walk(path) : entry.isFile() ? [path] : [];
      });
    return walk("");
  }
}

beforeAll(() => {
  copy = mkdtempSync(join(tmpdir(), "quorum-new-package-"));
  for (const file of workingTreeFiles()) {
    mkdirSync(dirname(join(copy, file)), { recursive: true });
    cpSync(join(root, file), join(copy, file));
  }
  symlinkSync(join(root, "node_modules"), join(copy, "node_modules"));
});

afterAll(() => {
  if (copy) rmSync(copy, { recursive: true, force: true });
});

describe("pnpm new-package", () => {
  it("creates packages that build, lint, typecheck and test green, found by turbo and vitest", () => {
    const plain = newPackage("alpha");
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout).toContain("created @quorum/alpha in packages/alpha");
    expect(plain.stdout).toContain("next steps:");
    const withProto = newPackage("beta-2", "--proto", "--description", "A package with a wire format");
    expect(withProto.status, withProto.stderr).toBe(0);

    const manifest = JSON.parse(readFileSync(join(copy, "packages/beta-2/package.json"), "utf8"));
    expect(manifest).toMatchObject({
      name: "@quorum/beta-2",
      version: "0.1.0",
      type: "module",
      description: "A package with a wire format",
      exports: { ".": { types: "./dist/index.d.ts", default: "./dist/index.js" }, "./internal/*": null },
      scripts: { build: "tsc -p tsconfig.build.json", typecheck: "tsc --noEmit", test: "vitest run" },
      dependencies: { "@bufbuild/protobuf": expect.any(String) },
    });
    for (const file of [
      "proto/quorum/beta_2/v1/beta_2.proto",
      "buf.gen.yaml",
      "src/gen/quorum/beta_2/v1/beta_2.ts",
      "README.md",
    ]) {
      expect(existsSync(join(copy, "packages/beta-2", file)), file).toBe(true);
    }
    expect(readFileSync(join(copy, "packages/alpha/README.md"), "utf8")).toContain("## Status");

    // The generated code imports @bufbuild/protobuf, which `pnpm install` would link; the copy
    // shares the original node_modules, so link the version the other packages use by hand.
    const protobuf = realpathSync(join(root, "packages/transport/node_modules/@bufbuild/protobuf"));
    mkdirSync(join(copy, "packages/beta-2/node_modules/@bufbuild"), { recursive: true });
    symlinkSync(protobuf, join(copy, "packages/beta-2/node_modules/@bufbuild/protobuf"));

    // turbo discovers both through the workspace globs and runs their pipelines.
    const turbo = inCopy(join(copy, "node_modules/.bin/turbo"), [
      "run",
      "build",
      "typecheck",
      "test",
      "--filter=@quorum/alpha",
      "--filter=@quorum/beta-2",
      "--output-logs=new-only",
    ]);
    expect(turbo.status, turbo.stdout + turbo.stderr).toBe(0);
    expect(turbo.stdout).toMatch(/6 successful, 6 total/);
    expect(existsSync(join(copy, "packages/alpha/dist/index.js"))).toBe(true);
    expect(existsSync(join(copy, "packages/beta-2/dist/index.d.ts"))).toBe(true);

    // The root vitest config picks them up as projects (packages/*), and their tests pass.
    const vitest = inCopy(join(copy, "node_modules/.bin/vitest"), [
      "run",
      "--project",
      "alpha",
      "--project",
      "beta-2",
    ]);
    expect(vitest.status, vitest.stdout + vitest.stderr).toBe(0);
    expect(vitest.stdout).toMatch(/6 passed, 0 failed/);

    const biome = inCopy(join(copy, "node_modules/.bin/biome"), [
      "check",
      "packages/alpha",
      "packages/beta-2",
    ]);
    expect(biome.status, biome.stdout + biome.stderr).toBe(0);

    // The committed-generated-code check stays green with the new package's proto.
    const gen = inCopy(process.execPath, ["scripts/gen.mjs", "--check"]);
    expect(gen.status, gen.stdout + gen.stderr).toBe(0);
    expect(gen.stdout).toMatch(/generated files are up to date/);
  }, 90_000);

  it.each([
    ["Bad_Name", /not a valid package name/],
    ["9lives", /not a valid package name/],
    ["trailing-", /not a valid package name/],
    ["raft", /already exists/],
    ["demo", /already exists/], // @quorum/demo is an app
  ])("refuses %s with a one-line error and exit code 2", (name, message) => {
    const result = newPackage(name);
    expect(result.status).toBe(2);
    expect(result.stderr.trim()).toMatch(message);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(existsSync(join(copy, "packages", name.toLowerCase(), "package.json"))).toBe(name === "raft");
  });

  it("refuses a missing name and an unknown option with exit code 2", () => {
    expect(newPackage().status).toBe(2);
    const result = inCopy(process.execPath, ["scripts/new-package.mjs", "gamma", "--frobnicate"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/unknown option --frobnicate/);
    expect(existsSync(join(copy, "packages/gamma"))).toBe(false);
  });
});
