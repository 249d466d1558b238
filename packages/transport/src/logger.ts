/**
 * The subset of pino's logger this package calls, so a pino logger (or a child of one)
 * can be passed in without this package deciding where logs go.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const ignore = (): void => {};

/** The default: a library stays quiet unless its user hands it a logger. */
export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
