import { TxnError } from "../errors.js";

/** One operation of a key-value transaction on one participant. */
export type KvOp =
  | { readonly op: "get"; readonly key: string }
  | { readonly op: "put"; readonly key: string; readonly value: string }
  | { readonly op: "delete"; readonly key: string }
  /**
   * Adds `delta` to the integer stored at `key` (missing = 0). With `min`, the participant
   * votes no when the result would fall below it (a bank's "no overdraft").
   */
  | { readonly op: "add"; readonly key: string; readonly delta: number; readonly min?: number };

/** What a participant read under its locks, returned with its yes vote. */
export type KvReads = Record<string, string | null>;

export const maxKeyBytes = 1024;
export const maxValueBytes = 64 * 1024;
export const maxOpsPerParticipant = 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeKvOps(ops: readonly KvOp[]): Uint8Array {
  validateKvOps(ops);
  return encoder.encode(JSON.stringify(ops));
}

function checkKey(key: unknown, i: number): string {
  if (typeof key !== "string" || key.length === 0) {
    throw new TxnError("INVALID_ARGUMENT", `op ${i}: key must be a non-empty string`);
  }
  if (encoder.encode(key).byteLength > maxKeyBytes) {
    throw new TxnError("INVALID_ARGUMENT", `op ${i}: key is over ${maxKeyBytes} bytes`);
  }
  return key;
}

function checkInt(n: unknown, what: string, i: number): number {
  if (typeof n !== "number" || !Number.isSafeInteger(n)) {
    throw new TxnError("INVALID_ARGUMENT", `op ${i}: ${what} must be a safe integer`);
  }
  return n;
}

export function validateKvOps(ops: unknown): KvOp[] {
  if (!Array.isArray(ops)) throw new TxnError("INVALID_ARGUMENT", "ops must be an array");
  if (ops.length === 0) throw new TxnError("INVALID_ARGUMENT", "ops must not be empty");
  if (ops.length > maxOpsPerParticipant) {
    throw new TxnError("INVALID_ARGUMENT", `at most ${maxOpsPerParticipant} ops per participant`);
  }
  return ops.map((o: unknown, i): KvOp => {
    if (typeof o !== "object" || o === null) throw new TxnError("INVALID_ARGUMENT", `op ${i}: not an object`);
    const r = o as Record<string, unknown>;
    const key = checkKey(r.key, i);
    switch (r.op) {
      case "get":
        return { op: "get", key };
      case "delete":
        return { op: "delete", key };
      case "put": {
        if (typeof r.value !== "string")
          throw new TxnError("INVALID_ARGUMENT", `op ${i}: value must be a string`);
        if (encoder.encode(r.value).byteLength > maxValueBytes) {
          throw new TxnError("INVALID_ARGUMENT", `op ${i}: value is over ${maxValueBytes} bytes`);
        }
        return { op: "put", key, value: r.value };
      }
      case "add": {
        const delta = checkInt(r.delta, "delta", i);
        if (r.min === undefined) return { op: "add", key, delta };
        return { op: "add", key, delta, min: checkInt(r.min, "min", i) };
      }
      default:
        throw new TxnError("INVALID_ARGUMENT", `op ${i}: unknown op ${JSON.stringify(r.op)}`);
    }
  });
}

export function decodeKvOps(bytes: Uint8Array): KvOp[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new TxnError("INVALID_ARGUMENT", "ops are not valid UTF-8 JSON");
  }
  return validateKvOps(parsed);
}

export function encodeKvReads(reads: KvReads): Uint8Array {
  return encoder.encode(JSON.stringify(reads));
}

export function decodeKvReads(bytes: Uint8Array): KvReads {
  if (bytes.byteLength === 0) return {};
  return JSON.parse(decoder.decode(bytes)) as KvReads;
}
