#!/usr/bin/env node
// Runs every worked example in turn (from dist/, so after `pnpm build`); stops at the first
// that fails. `pnpm examples` at the root builds first, then runs this.
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dist = fileURLToPath(new URL("./dist/", import.meta.url));
// Helpers, not examples.
const helpers = new Set(["util.js", "command-list.js"]);
const examples = readdirSync(dist).filter((f) => f.endsWith(".js") && !helpers.has(f));

for (const file of examples) {
  console.log(`\n######## ${file.replace(/\.js$/, "")}`);
  try {
    execFileSync(process.execPath, [`${dist}${file}`], { stdio: "inherit" });
  } catch {
    console.error(`\nexample ${file} failed`);
    process.exit(1);
  }
}
console.log(`\nall ${examples.length} examples passed`);
