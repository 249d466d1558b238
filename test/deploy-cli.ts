// Helpers for the tests that hold the deploy files and the README to the real CLI:
// what flags `quorum <command>` accepts, and how systemd would turn a unit's ExecStart and
// an EnvironmentFile into a command line.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const cli = `${root}apps/demo/dist/cli.js`;

const helpCache = new Map<string, Set<string>>();

/** The long flags `quorum <command...> --help` lists, e.g. ["node"] gives --name, --data-dir, ... */
export function cliFlags(command: string[]): Set<string> {
  const key = command.join(" ");
  const cached = helpCache.get(key);
  if (cached) return cached;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` first`);
  const help = execFileSync(process.execPath, [cli, ...command, "--help"], { encoding: "utf8" });
  // Option lines start with the flag: "  --listen-client <host:port>  address for ..." or "  -h, --help".
  const flags = new Set([...help.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]!));
  if (!flags.has("--help") || flags.size < 2) throw new Error(`unexpected help output:\n${help}`);
  helpCache.set(key, flags);
  return flags;
}

/** The `--flags` among command-line words (`--a=b` counts as `--a`). */
export function flagsOf(words: readonly string[]): string[] {
  return words.filter((w) => w.startsWith("--")).map((w) => w.split("=")[0]!);
}

/** The value that follows `flag` in `words` (etcd style: `--flag value`), or undefined. */
export function flagValue(words: readonly string[], flag: string): string | undefined {
  const i = words.indexOf(flag);
  return i < 0 ? undefined : words[i + 1];
}

/** Parses a systemd EnvironmentFile: KEY=VALUE lines, `#` comments, optional quotes. */
export function parseEnvFile(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const [n, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) throw new Error(`line ${n + 1} is not KEY=VALUE: ${raw}`);
    const value = match[2]!.replace(/^"(.*)"$/, "$1").replace(/^'(.*)'$/, "$1");
    if (vars.has(match[1]!)) throw new Error(`line ${n + 1}: ${match[1]} is set twice`);
    vars.set(match[1]!, value);
  }
  return vars;
}

/** `Key=value` settings of one section of a unit file, continuation lines joined. */
export function unitSection(text: string, section: string): Map<string, string[]> {
  const joined = text.replace(/\\\n\s*/g, " ");
  const settings = new Map<string, string[]>();
  let current = "";
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf("=");
    if (eq < 0) throw new Error(`[${section}] line without '=': ${line}`);
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

/**
 * The words of an ExecStart= line with `${VAR}` replaced as systemd does (the exact value,
 * inside a word or as one). The deploy files use neither quotes nor bare `$VAR` (which
 * systemd splits at whitespace), so meeting one is an error here rather than a guess.
 */
export function expandExecStart(line: string, env: ReadonlyMap<string, string>): string[] {
  if (/["']/.test(line)) throw new Error(`ExecStart with quotes is not supported here: ${line}`);
  return line
    .trim()
    .split(/\s+/)
    .map((word) => {
      const expanded = word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
        const value = env.get(name);
        if (value === undefined) throw new Error(`ExecStart uses \${${name}}, which is not set`);
        return value;
      });
      if (expanded.includes("$")) throw new Error(`bare $VAR in ExecStart: ${word}`);
      return expanded;
    });
}

/** The `${VAR}` names an ExecStart line uses. */
export function varsOf(line: string): string[] {
  return [...line.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!);
}
