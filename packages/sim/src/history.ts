/** Values a key-value history can hold; compared with `===`. */
export type Value = string | number;

export type KvInput =
  | { readonly type: "read" }
  | { readonly type: "write"; readonly value: Value }
  /** Compare-and-set: `expected === undefined` means "the key is absent". */
  | { readonly type: "cas"; readonly expected: Value | undefined; readonly value: Value };

export type KvOutput =
  | { readonly type: "read"; readonly value: Value | undefined }
  | { readonly type: "write" }
  | { readonly type: "cas"; readonly ok: boolean };

/** One client operation on one key, as the client saw it. */
export interface Operation {
  readonly id: number;
  readonly client: string;
  readonly key: string;
  readonly input: KvInput;
  readonly invokeTime: number;
  /** `Infinity` when the outcome is unknown (timeout, crash): it may or may not take effect. */
  readonly completeTime: number;
  /** `undefined` when the outcome is unknown. */
  readonly output: KvOutput | undefined;
}

interface Pending {
  id: number;
  client: string;
  key: string;
  input: KvInput;
  invokeTime: number;
  completeTime: number;
  output: KvOutput | undefined;
  done: boolean;
}

/**
 * Records what clients did and saw, with virtual timestamps from `clock`. Record the invoke
 * just before the request leaves the client and the completion just after the answer
 * arrives, so each operation's interval covers the moment it took effect.
 */
export class History {
  private readonly ops: Pending[] = [];

  constructor(private readonly clock: { now(): number }) {}

  invoke(client: string, key: string, input: KvInput): number {
    const id = this.ops.length;
    this.ops.push({
      id,
      client,
      key,
      input,
      invokeTime: this.clock.now(),
      completeTime: Number.POSITIVE_INFINITY,
      output: undefined,
      done: false,
    });
    return id;
  }

  /** The operation finished and the client saw `output`. */
  complete(id: number, output: KvOutput): void {
    const op = this.open(id);
    if (output.type !== op.input.type) {
      throw new TypeError(`operation ${id} is a ${op.input.type} but completed as a ${output.type}`);
    }
    op.done = true;
    op.output = output;
    op.completeTime = this.clock.now();
  }

  /** The client gave up (timeout, error, crash): the operation may or may not have taken effect. */
  unknown(id: number): void {
    this.open(id).done = true;
  }

  /** Every operation so far; those still open count as unknown. */
  operations(): Operation[] {
    return this.ops.map(({ done: _done, ...op }) => ({ ...op }));
  }

  size(): number {
    return this.ops.length;
  }

  private open(id: number): Pending {
    const op = this.ops[id];
    if (!op) throw new RangeError(`no operation ${id}`);
    if (op.done) throw new Error(`operation ${id} already completed`);
    return op;
  }
}

function show(v: Value | undefined): string {
  return v === undefined ? "nil" : JSON.stringify(v);
}

/** One line per operation, e.g. `c1 write(k, 3) [10, 25] -> ok`. */
export function formatOperation(op: Operation): string {
  const i = op.input;
  const call =
    i.type === "read"
      ? `read(${op.key})`
      : i.type === "write"
        ? `write(${op.key}, ${show(i.value)})`
        : `cas(${op.key}, ${show(i.expected)} -> ${show(i.value)})`;
  const o = op.output;
  const result =
    o === undefined
      ? "unknown"
      : o.type === "read"
        ? show(o.value)
        : o.type === "write"
          ? "ok"
          : o.ok
            ? "ok"
            : "failed";
  const end = Number.isFinite(op.completeTime) ? String(op.completeTime) : "inf";
  return `#${op.id} ${op.client} ${call} [${op.invokeTime}, ${end}] -> ${result}`;
}
