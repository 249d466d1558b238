#!/usr/bin/env node
// `pnpm new-package NAME [--proto] [--description TEXT] [--no-install]`
//
// Creates packages/NAME (@quorum/NAME) from templates/package (and templates/proto with
// --proto): package.json with an exports map, tsconfigs, a vitest project, src/index.ts with
// a test, a README with a Status list. It builds, lints, typechecks and tests green as
// created; turbo and the root vitest config find it through the `packages/*` globs.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const usage = "usage: pnpm new-package NAME [--proto] [--description TEXT] [--no-install]";

/** A one-line error and exit code 2 (bad input), as the CLI rules ask. */
function fail(message) {
  console.error(`new-package: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { name: undefined, proto: false, install: true, description: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--proto") options.proto = true;
    else if (arg === "--no-install") options.install = false;
    else if (arg === "--description") {
      options.description = argv[++i];
      if (options.description === undefined || options.description.trim() === "") {
        fail("--description needs a text");
      }
    } else if (arg === "--help" || arg === "-h") {
      console.log(usage);
      process.exit(0);
    } else if (arg.startsWith("-")) fail(`unknown option ${arg} (${usage})`);
    else if (options.name === undefined) options.name = arg;
    else fail(`one package name expected, got "${options.name}" and "${arg}"`);
  }
  return options;
}

/** Names already taken by workspace packages (apps included: @quorum/demo is an app). */
function takenNames() {
  const names = new Set();
  for (const group of ["packages", "apps"]) {
    const dir = join(root, group);
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir)) {
      names.add(entry);
      const manifest = join(dir, entry, "package.json");
      if (existsSync(manifest)) {
        const name = JSON.parse(readFileSync(manifest, "utf8")).name;
        if (typeof name === "string" && name.startsWith("@quorum/")) names.add(name.slice("@quorum/".length));
      }
    }
  }
  return names;
}

function validateName(name) {
  if (name === undefined) fail(`no package name given (${usage})`);
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name) || name.length > 40) {
    fail(
      `"${name}" is not a valid package name: use lowercase letters, digits and single dashes, starting with a letter (at most 40 characters)`,
    );
  }
  if (takenNames().has(name) || existsSync(join(root, "packages", name))) {
    fail(`a package named "${name}" already exists (packages/${name} or @quorum/${name})`);
  }
}

/** Copies a template folder, replacing placeholders in file names and contents. */
function copyTemplate(from, to, replacements) {
  const substitute = (text) => Object.entries(replacements).reduce((t, [k, v]) => t.split(k).join(v), text);
  for (const entry of readdirSync(from)) {
    const source = join(from, entry);
    const target = join(to, substitute(entry));
    if (statSync(source).isDirectory()) {
      copyTemplate(source, target, replacements);
      continue;
    }
    cpSync(source, target);
    writeFileSync(target, substitute(readFileSync(target, "utf8")));
  }
}

function run(command, args, cwd) {
  execFileSync(command, args, { cwd, stdio: "inherit" });
}

const options = parseArgs(process.argv.slice(2));
validateName(options.name);
const name = options.name;
// Protobuf package names allow no dashes: quorum.my_pkg.v1 for packages/my-pkg.
const protoName = name.replaceAll("-", "_");
const dir = join(root, "packages", name);
const buf = join(root, "node_modules", ".bin", "buf");
if (options.proto && !existsSync(buf)) {
  console.error(
    "new-package: --proto needs buf from the workspace's dev dependencies; run `pnpm install` first",
  );
  process.exit(1);
}
const description = options.description ?? `@quorum/${name}: describe what this package is for`;

try {
  copyTemplate(join(root, "templates", "package"), dir, {
    __name__: name,
    __description__: description,
    __proto_layout__: options.proto
      ? `- \`proto/quorum/${protoName}/v1/${protoName}.proto\`: the wire messages, generated into \`src/gen\`\n  by \`pnpm gen\` (commit the generated code; \`test/gen.test.ts\` fails when it is stale).\n- \`src/wire.ts\`: encode and decode them.\n`
      : "",
  });

  if (options.proto) {
    copyTemplate(join(root, "templates", "proto"), dir, { __name__: name, __protoname__: protoName });
    // The generated code imports @bufbuild/protobuf: the same version as the other packages.
    const transport = JSON.parse(readFileSync(join(root, "packages", "transport", "package.json"), "utf8"));
    const manifestPath = join(dir, "package.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    manifest.dependencies = { "@bufbuild/protobuf": transport.dependencies["@bufbuild/protobuf"] };
    manifest.scripts.gen = "node ../../scripts/gen.mjs .";
    writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    const index = join(dir, "src", "index.ts");
    writeFileSync(
      index,
      `${readFileSync(index, "utf8")}\nexport { decodeGreeting, encodeGreeting, type Greeting } from "./wire.js";\n`,
    );
    // This package's own `gen` script, which `pnpm gen` runs in every package through turbo.
    run(process.execPath, [join(root, "scripts", "gen.mjs"), "."], dir);
  }
} catch (error) {
  rmSync(dir, { recursive: true, force: true });
  console.error(
    `new-package: could not create packages/${name}: ${error instanceof Error ? error.message : error}`,
  );
  process.exit(1);
}

// Keep the file list deterministic for the report below.
const created = [];
const walk = (d) => {
  for (const entry of readdirSync(d).sort()) {
    const path = join(d, entry);
    if (statSync(path).isDirectory()) walk(path);
    else created.push(relative(root, path));
  }
};
walk(dir);
console.log(`created @quorum/${name} in packages/${name}:\n  ${created.join("\n  ")}`);

if (options.install) {
  // Links the new workspace package (and its dependencies) and records it in the lockfile.
  try {
    run("pnpm", ["install", "--offline"], root);
  } catch {
    console.error(
      `new-package: \`pnpm install --offline\` failed; run \`pnpm install\` to link @quorum/${name}`,
    );
    process.exit(1);
  }
}

console.log(`
next steps:
  ${options.install ? "" : "pnpm install                                  # link it and record it in the lockfile\n  "}pnpm exec vitest run --project ${name}        # its tests (read src/, no build needed)
  pnpm build                                    # turbo builds it with the others (dist/)
  pnpm lint                                     # typecheck + biome
  edit packages/${name}/src/index.ts and README.md (description, Status)${options.proto ? `\n  edit packages/${name}/proto/quorum/${protoName}/v1/${protoName}.proto, then pnpm gen` : ""}
  another package uses it by adding "@quorum/${name}": "workspace:*" to its dependencies
  add a row to the package table in the root README.md`);
