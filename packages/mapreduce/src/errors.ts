/** What went wrong, for a CLI to map to a message and an exit code without parsing text. */
export type MapReduceErrorCode =
  | "NO_INPUT"
  | "UNREADABLE_INPUT"
  | "BAD_REDUCES"
  | "BAD_JOB"
  | "BAD_OPTION"
  | "JOB_FAILED"
  | "STATE_MISMATCH"
  | "COORDINATOR_UNREACHABLE"
  | "WORKERS_LOST";

/** An error whose message is one line a person can act on; never a stack dump. */
export class MapReduceError extends Error {
  override readonly name = "MapReduceError";
  constructor(
    readonly code: MapReduceErrorCode,
    message: string,
  ) {
    super(message.replace(/\s*\n\s*/g, " "));
  }
}

/** The first line of an error's message (job code may throw anything). */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const first = (error.message.split("\n")[0] ?? "").trim();
    return `${error.name}: ${first}`;
  }
  return String(error).split("\n")[0] ?? "";
}
