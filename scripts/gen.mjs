#!/usr/bin/env node
// Regenerates TypeScript from .proto files with buf + ts-proto: `pnpm gen` runs it in every
// package through turbo (cached on proto/ and buf.gen.yaml).
// `--check` generates into a temporary folder and fails if the committed files differ.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const buf = join(root, "node_modules", ".bin", "buf");
const check = process.argv.includes("--check");

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}

// Folders named on the command line (a package's own `gen` script passes "."), else every
// package and app that has a buf.gen.yaml.
const named = process.argv.slice(2).filter((arg) => !arg.startsWith("--"));
const packageDirs = (
  named.length > 0
    ? named.map((dir) => resolve(dir))
    : ["packages", "apps"].flatMap((group) =>
        readdirSync(join(root, group)).map((name) => join(root, group, name)),
      )
).filter((dir) => existsSync(join(dir, "buf.gen.yaml")));

const stale = [];
for (const dir of packageDirs) {
  const committed = join(dir, "src", "gen");
  if (!check) {
    rmSync(committed, { recursive: true, force: true });
    execFileSync(buf, ["generate"], { cwd: dir, stdio: "inherit" });
    console.log(`generated ${relative(root, committed)}`);
    continue;
  }
  const out = mkdtempSync(join(tmpdir(), "quorum-gen-"));
  try {
    execFileSync(buf, ["generate", "-o", out], { cwd: dir, stdio: "inherit" });
    const fresh = join(out, "src", "gen");
    const a = listFiles(committed)
      .map((f) => relative(committed, f))
      .sort();
    const b = listFiles(fresh)
      .map((f) => relative(fresh, f))
      .sort();
    const names = new Set([...a, ...b]);
    for (const name of names) {
      const x = existsSync(join(committed, name)) ? readFileSync(join(committed, name), "utf8") : null;
      const y = existsSync(join(fresh, name)) ? readFileSync(join(fresh, name), "utf8") : null;
      if (x !== y) stale.push(relative(root, join(committed, name)));
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
if (check) {
  if (stale.length > 0) {
    console.error(`generated files are stale (run \`pnpm gen\`):\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
  console.log(`generated files are up to date (${packageDirs.length} packages)`);
}
