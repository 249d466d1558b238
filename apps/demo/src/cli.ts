#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { runTransportDemo } from "./commands/transport-demo.js";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage (unknown command, bad flag). */
export const EXIT_USAGE = 2;

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

function buildProgram(): Command {
  const program = new Command("quorum")
    .description(
      "Quorum: a sharded, replicated, etcd-compatible store, its consensus protocols and a MapReduce runner",
    )
    .version(version, "-v, --version")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // One line, no stack trace: commander's own messages already read well.
      outputError: (text, write) => write(text.split("\n")[0] + "\n"),
    });

  program
    .command("demo")
    .description("run the demo: for now three nodes exchanging messages over the gRPC transport")
    .option("--nodes <n>", "how many nodes", positiveInt("--nodes"), 3)
    .option("--messages <n>", "messages each node sends to each peer", positiveInt("--messages"), 1000)
    .action(async (opts: { nodes: number; messages: number }) => {
      await runTransportDemo(opts);
    });

  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length <= 2) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      const benign = ["commander.helpDisplayed", "commander.version", "commander.help"];
      return benign.includes(err.code) ? 0 : EXIT_USAGE;
    }
    process.stderr.write(`quorum: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
