// The README's code cannot drift from the code. Under "Packages by example" every ```ts
// block is marked, just above it, as one of:
//   <!-- excerpt: examples/src/FILE.ts -->  its lines are FILE's lines, in order, contiguous
//        except where a `// ...` line marks skipped ones; FILE runs in examples.test.ts.
//   <!-- program -->  a whole program: type-checked against the built packages, run, and what
//        it prints must equal the ```text block that follows it.
// Every package of the README's table has such an example. And every command line in a
// ```sh block of the README that runs the quorum CLI uses only flags the CLI has.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { cliFlags, flagsOf, root } from "./deploy-cli.js";

const readme = readFileSync(join(root, "README.md"), "utf8");

interface Block {
  lang: string;
  code: string;
  /** The last non-blank line before the opening fence. */
  before: string;
  /** The heading (### or ##) the block sits under. */
  heading: string;
  /** Where the block starts in the README (1-based), for messages. */
  line: number;
}

function fencedBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  let heading = "";
  let before = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const open = /^```(\w*)\s*$/.exec(line);
    if (!open) {
      if (/^#{2,3} /.test(line)) heading = line.replace(/^#+ /, "");
      if (line.trim() !== "") before = line.trim();
      continue;
    }
    const start = i;
    const body: string[] = [];
    while (++i < lines.length && !/^```\s*$/.test(lines[i]!)) body.push(lines[i]!);
    blocks.push({ lang: open[1]!, code: body.join("\n"), before, heading, line: start + 1 });
    before = "";
  }
  return blocks;
}

/** The README text from `## title` to the next `## ` heading. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

const examples = fencedBlocks(section("Packages by example"));
const sectionStart = readme.slice(0, readme.indexOf("\n## Packages by example\n")).split("\n").length;
const where = (b: Block) => `README.md line ${sectionStart + b.line - 1} (under "${b.heading}")`;

// ---- excerpts ------------------------------------------------------------------------

/**
 * Where the excerpt's lines are in `source`: each run of lines between `// ...` markers must
 * appear, in order and contiguous, after the previous run. Lines compare trimmed (an
 * excerpt may drop the indentation of the function it comes from). Returns a message for
 * the first run that is not found, or undefined.
 */
function findExcerpt(excerpt: string, source: string): string | undefined {
  const file = source.split("\n").map((l) => l.trim());
  const runs: string[][] = [[]];
  for (const raw of excerpt.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("// ...")) runs.push([]);
    else runs[runs.length - 1]!.push(line);
  }
  let from = 0;
  for (const run of runs.filter((r) => r.length > 0)) {
    let at = -1;
    for (let i = from; i + run.length <= file.length && at < 0; i++) {
      if (run.every((line, k) => file[i + k] === line)) at = i;
    }
    if (at < 0) return `these lines are not in the source (after line ${from}):\n${run.join("\n")}`;
    from = at + run.length;
  }
  return undefined;
}

describe("README: the packages by example", () => {
  const tsBlocks = examples.filter((b) => b.lang === "ts");

  it("has a marked example for every package of the table", () => {
    const table = readme.slice(0, readme.indexOf("\n## "));
    const packages = [...table.matchAll(/^\| \[`(@quorum\/[a-z-]+)`\]/gm)].map((m) => m[1]!);
    expect(packages.length).toBeGreaterThanOrEqual(9);
    const withExample = new Set(examples.map((b) => b.heading.replaceAll("`", "")));
    expect(packages.filter((p) => !withExample.has(p))).toEqual([]);
    for (const block of tsBlocks) {
      expect(block.before, `${where(block)}: mark it <!-- excerpt: path --> or <!-- program -->`).toMatch(
        /^<!-- (excerpt: \S+|program) -->$/,
      );
    }
  });

  const excerpts = tsBlocks.filter((b) => b.before.startsWith("<!-- excerpt:"));
  it.each(excerpts.map((b) => ({ name: `${b.heading}: ${b.before}`, block: b })))(
    "$name is still the code of its source file",
    ({ block }) => {
      const path = /^<!-- excerpt: (\S+) -->$/.exec(block.before)![1]!;
      // Only the examples: the suite runs them, so an excerpt of one is code that works.
      expect(path).toMatch(/^examples\/src\/[\w/-]+\.ts$/);
      const source = readFileSync(join(root, path), "utf8");
      expect(findExcerpt(block.code, source), where(block)).toBeUndefined();
    },
  );

  it("rejects an excerpt that differs from its source (the checker itself)", () => {
    const source = "a();\nb();\n  c();\nd();\n";
    expect(findExcerpt("a();\nb();", source)).toBeUndefined();
    expect(findExcerpt("b();\n// ... skipped\nd();", source)).toBeUndefined();
    expect(findExcerpt("c();", source)).toBeUndefined(); // indentation is not compared
    expect(findExcerpt("a();\nc();", source)).toMatch(/not in the source/); // a gap needs // ...
    expect(findExcerpt("d();\n// ...\na();", source)).toMatch(/not in the source/); // order counts
    expect(findExcerpt("b();\nB();", source)).toMatch(/not in the source/);
  });

  // ---- programs ------------------------------------------------------------------------

  const programs = tsBlocks.filter((b) => b.before === "<!-- program -->");
  const dir = mkdtempSync(join(tmpdir(), "quorum-readme-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** `@quorum/x` resolves to the built package, as it would for a user of the package. */
  function withBuiltPackages(code: string): string {
    return code.replace(/from "@quorum\/([a-z-]+)"/g, (_, pkg: string) => {
      const dist = join(root, "packages", pkg, "dist", "index.js");
      if (!existsSync(dist)) throw new Error(`${dist} is missing: run \`pnpm build\` first`);
      return `from "${dist}"`;
    });
  }

  function typeErrors(file: string): string[] {
    const program = ts.createProgram([file], {
      target: ts.ScriptTarget.ES2022,
      lib: ["lib.es2023.d.ts"],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      skipLibCheck: true,
      noEmit: true,
      types: ["node"],
      typeRoots: [join(root, "node_modules", "@types")],
    });
    return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  }

  it("has programs (and so runs some)", () => {
    expect(programs.length).toBeGreaterThan(0);
  });

  it.each(programs.map((b) => ({ name: b.heading, block: b })))(
    "$name: the program type-checks, runs, and prints what the README shows",
    ({ block }) => {
      const next = examples[examples.indexOf(block) + 1];
      expect(next?.lang, `${where(block)}: a \`\`\`text block with the output must follow`).toBe("text");
      const name = block.heading.replace(/\W+/g, "-").replace(/^-|-$/g, "");
      const code = withBuiltPackages(block.code);
      const file = join(dir, `${name}.mts`);
      writeFileSync(file, code);
      expect(typeErrors(file), where(block)).toEqual([]);
      const js = ts.transpileModule(code, {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      }).outputText;
      writeFileSync(join(dir, `${name}.mjs`), js);
      const run = spawnSync(process.execPath, [join(dir, `${name}.mjs`)], {
        encoding: "utf8",
        timeout: 20_000,
      });
      expect({ status: run.status, stderr: run.stderr }, where(block)).toEqual({ status: 0, stderr: "" });
      expect(run.stdout.trimEnd(), where(block)).toBe(next!.code.trimEnd());
    },
    40_000,
  );
});

// ---- shell commands ------------------------------------------------------------------

/**
 * The quorum CLI invocations in a shell block: `quorum CMD`, `node .../cli.js CMD`,
 * `./run demo`, `pnpm demo`, or an image `quorum:TAG CMD` in `docker run`. Returns the
 * subcommand path (e.g. ["mapreduce", "run"]) and the words after it, up to a pipe, `&&`,
 * `;` or comment.
 */
function cliInvocations(script: string): { command: string[]; words: string[]; text: string }[] {
  const found: { command: string[]; words: string[]; text: string }[] = [];
  for (const text of script.replace(/\\\n\s*/g, " ").split("\n")) {
    const words = text
      .replace(/#.*$/, "")
      .split(/\s+|&&|;|\|/)
      .map((w) => w.replace(/^\[|\]$/g, ""))
      .filter((w) => w !== "");
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      const isCli =
        w === "quorum" ||
        /(^|\/)dist\/cli\.js$/.test(w) ||
        /^quorum:[\w.-]+$/.test(w) ||
        (w === "./run" && words[i + 1] === "demo") ||
        (w === "pnpm" && words[i + 1] === "demo");
      // `systemctl enable quorum` is not the CLI: a subcommand must follow.
      if (!isCli || !["demo", "node", "cluster", "mapreduce"].includes(words[i + 1] ?? "")) continue;
      const command = [words[i + 1]!];
      if (command[0] === "mapreduce") command.push(words[i + 2]!);
      // The arguments end where the next program starts (e.g. `... && etcdctl ...`).
      const rest = words.slice(i + 1 + command.length);
      const stop = rest.findIndex((x) => ["etcdctl", "curl", "docker", "kubectl", "export"].includes(x));
      found.push({ command, words: stop < 0 ? rest : rest.slice(0, stop), text: text.trim() });
      break;
    }
  }
  return found;
}

describe("README: shell commands", () => {
  const commands = fencedBlocks(readme)
    .filter((b) => b.lang === "sh")
    .flatMap((b) => cliInvocations(b.code));

  it("finds the CLI commands in the README's shell blocks (the parser itself)", () => {
    expect(commands.some((c) => c.command[0] === "node")).toBe(true);
    expect(cliInvocations("docker run -d -p 1:1 quorum:0.1.0 node --name n1 --listen-client a:1")).toEqual([
      {
        command: ["node"],
        words: ["--name", "n1", "--listen-client", "a:1"],
        text: "docker run -d -p 1:1 quorum:0.1.0 node --name n1 --listen-client a:1",
      },
    ]);
    expect(
      cliInvocations("quorum node --name n1 \\\n  [--consensus paxos]  # comment --x")[0]?.words,
    ).toEqual(["--name", "n1", "--consensus", "paxos"]);
  });

  it.each(commands.map((c) => ({ name: c.text.slice(0, 70), ...c })))(
    "$name uses flags the CLI has",
    ({ command, words }) => {
      const known = cliFlags(command);
      expect(
        flagsOf(words).filter((f) => !known.has(f)),
        `quorum ${command.join(" ")}`,
      ).toEqual([]);
    },
  );
});
