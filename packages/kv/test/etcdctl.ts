import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const path = `${dir}/${name}`;
    if (dir && existsSync(path)) return path;
  }
  return undefined;
}

/** Runs a command without blocking the event loop (the server under test shares this process). */
export function run(
  file: string,
  args: string[],
  options: { stdin?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: { ...process.env, ...options.env },
      // No input: no pipe, which a command that exits at once would close under our write (EPIPE).
      stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    if (options.stdin !== undefined) {
      // A command may exit without reading all of its input; its exit code says what happened.
      child.stdin!.on("error", () => {});
      child.stdin!.end(options.stdin);
    }
  });
}

export function etcdctl(endpoint: string, args: string[], stdin?: string): Promise<Run> {
  return run("etcdctl", [`--endpoints=${endpoint}`, "--command-timeout=5s", ...args], {
    env: { ETCDCTL_API: "3" },
    ...(stdin !== undefined ? { stdin } : {}),
  });
}

/** `etcdctl watch` runs until killed: spawn it, read its stdout, kill it. */
export class Watching {
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(endpoint: string, args: string[]) {
    this.child = spawn("etcdctl", [`--endpoints=${endpoint}`, "watch", ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdout!.on("data", (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
  }

  async until(predicate: (stdout: string) => boolean, ms = 5_000): Promise<string> {
    if (!(await this.within(predicate, ms))) {
      throw new Error(`etcdctl watch: waited for output; stdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
    }
    return this.stdout;
  }

  /** Whether the output satisfies `predicate` within `ms` (false also when etcdctl exited). */
  async within(predicate: (stdout: string) => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!predicate(this.stdout)) {
      if (Date.now() > deadline || this.child.exitCode !== null) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }
}
