// Small helpers the examples share. Nothing Quorum-specific here.

/** Fails the example (a non-zero exit) when what it demonstrates did not happen. */
export function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`  ✓ ${what}`);
}

export function section(title: string): void {
  console.log(`\n== ${title}`);
}

/** Polls `probe` every 10 ms until it returns a value (not undefined), or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Examples must end by themselves. If one hangs (a bug), this ends it with exit code 1
 * after `ms`; the timer does not keep a finished example alive.
 */
export function exitIfStuck(ms: number): void {
  setTimeout(() => {
    console.error(`example did not finish within ${ms} ms`);
    process.exit(1);
  }, ms).unref();
}
