import { formatOperation, type History, type Operation, type Value } from "./history.js";

/**
 * Linearizability checker for key-value histories (read, write, compare-and-set).
 *
 * Wing & Gong's search with Lowe's memoization, as in porcupine: walk the history in time
 * order; at each call, try to linearize a pending operation whose call precedes every
 * remaining return; a configuration (set of linearized operations, register value) seen
 * before is never explored twice. Linearizability is compositional (Herlihy & Wing), so each
 * key is checked on its own, which keeps the search small.
 *
 * An operation with an unknown outcome returns at +infinity: it may be linearized anywhere
 * after its call, including after everything else, which is the same as not taking effect.
 */

export interface CheckOptions {
  /** Search steps per key before giving up with `kind: "limit"`. Default 2,000,000. */
  maxSteps?: number;
  /** The value of every key before the history (default: absent). */
  initial?: Value | undefined;
  /** Shrink a failing key's history to a minimal failing subset (default true). */
  minimize?: boolean;
}

export type CheckResult =
  | { readonly ok: true; readonly keys: number; readonly operations: number }
  | {
      readonly ok: false;
      /** "violation": no linearization exists. "limit": the search gave up; nothing is proven. */
      readonly kind: "violation" | "limit";
      readonly key: string;
      /** The offending operations (a 1-minimal failing subset when minimized). */
      readonly operations: readonly Operation[];
      readonly explanation: string;
    };

type State = Value | undefined;

interface Entry {
  readonly op: number; // index into the per-key op array
  readonly isCall: boolean;
  readonly time: number;
  match: Entry | undefined; // the call's return
  prev: Entry | undefined;
  next: Entry | undefined;
}

/** Applies `op` to `state`; returns the next state, or `null` when the op's output is impossible. */
function step(state: State, op: Operation): { state: State } | null {
  const i = op.input;
  const o = op.output;
  switch (i.type) {
    case "read":
      if (o === undefined) return { state };
      return o.type === "read" && o.value === state ? { state } : null;
    case "write":
      return { state: i.value };
    case "cas": {
      const swapped = state === i.expected;
      if (o !== undefined && (o.type !== "cas" || o.ok !== swapped)) return null;
      return { state: swapped ? i.value : state };
    }
  }
}

function stateKey(s: State): string {
  return s === undefined ? "u" : typeof s === "number" ? `n${s}` : `s${s}`;
}

type SearchResult = "ok" | "violation" | "limit";

/**
 * Drops operations that cannot matter, because each unknown outcome doubles the states to
 * explore (it may be linearized anywhere after its call):
 * - a read with an unknown outcome constrains nothing and changes nothing;
 * - a write or CAS with an unknown outcome whose value nobody observes (no completed read
 *   returns it, no CAS expects it) can be moved to the end of any linearization, where it
 *   changes nothing observable, so it can be dropped. Between it and the next write there can
 *   be no read (it would return the value) and no successful CAS from it; a failed or
 *   unknown CAS there could change its outcome, so the rule applies only to keys without
 *   failed or unknown CAS operations.
 */
function prune(ops: readonly Operation[]): Operation[] {
  const kept = ops.filter((op) => !(op.input.type === "read" && op.output === undefined));
  const casMayFailOrBeUnknown = kept.some(
    (op) =>
      op.input.type === "cas" && (op.output === undefined || (op.output.type === "cas" && !op.output.ok)),
  );
  if (casMayFailOrBeUnknown) return kept;
  const observed = new Set<State>();
  for (const op of kept) {
    if (op.output?.type === "read") observed.add(op.output.value);
    if (op.input.type === "cas") observed.add(op.input.expected);
  }
  return kept.filter(
    (op) => !(op.output === undefined && op.input.type !== "read" && !observed.has(op.input.value)),
  );
}

/** Checks one key's operations. */
function search(ops: readonly Operation[], initial: State, maxSteps: number): SearchResult {
  const live = prune(ops);
  const n = live.length;
  if (n === 0) return "ok";
  const entries: Entry[] = [];
  live.forEach((op, i) => {
    const call: Entry = {
      op: i,
      isCall: true,
      time: op.invokeTime,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    const ret: Entry = {
      op: i,
      isCall: false,
      time: op.completeTime,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    call.match = ret;
    entries.push(call, ret);
  });
  // At equal times calls come first: touching intervals count as concurrent (the lenient
  // reading, since virtual time has no finer grain than one event).
  entries.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1));
  const head: Entry = { op: -1, isCall: false, time: -1, match: undefined, prev: undefined, next: undefined };
  let prev = head;
  for (const e of entries) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }

  const words = new Uint32Array(Math.ceil(n / 32));
  const bitsKey = () => words.join(",");
  const setBit = (i: number) => {
    words[i >> 5] = (words[i >> 5] as number) | (1 << (i & 31));
  };
  const clearBit = (i: number) => {
    words[i >> 5] = (words[i >> 5] as number) & ~(1 << (i & 31));
  };
  const lift = (e: Entry) => {
    (e.prev as Entry).next = e.next;
    (e.next as Entry).prev = e.prev;
    const m = e.match as Entry;
    (m.prev as Entry).next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (e: Entry) => {
    const m = e.match as Entry;
    (m.prev as Entry).next = m;
    if (m.next) m.next.prev = m;
    (e.prev as Entry).next = e;
    (e.next as Entry).prev = e;
  };

  const seen = new Set<string>();
  const stack: { entry: Entry; state: State }[] = [];
  let state: State = initial;
  let entry = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > maxSteps) return "limit";
    if (entry === undefined) return "violation"; // cannot happen: a return always follows
    if (entry.isCall) {
      const op = live[entry.op] as Operation;
      const next = step(state, op);
      if (next !== null) {
        setBit(entry.op);
        const key = `${bitsKey()}|${stateKey(next.state)}`;
        if (!seen.has(key)) {
          seen.add(key);
          stack.push({ entry, state });
          state = next.state;
          lift(entry);
          entry = head.next;
          continue;
        }
        clearBit(entry.op);
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: undo the last choice.
      const top = stack.pop();
      if (top === undefined) return "violation";
      clearBit(top.entry.op);
      state = top.state;
      unlift(top.entry);
      entry = top.entry.next;
    }
  }
  return "ok";
}

/**
 * The first operation whose observed value no operation of `ops` could have produced (a read
 * of a value never written, a successful CAS from such a value), if any.
 */
function unexplained(ops: readonly Operation[], initial: State): Operation | undefined {
  const produced = new Set<State>([initial]);
  for (const op of ops) if (op.input.type !== "read") produced.add(op.input.value);
  return ops.find((op) => {
    if (op.output?.type === "read") return !produced.has(op.output.value);
    if (op.output?.type === "cas" && op.output.ok && op.input.type === "cas")
      return !produced.has(op.input.expected);
    return false;
  });
}

/**
 * Greedy delta-debugging: drop each op whose removal keeps the history non-linearizable.
 * Removal must not leave a read of a value nobody wrote, or every stale read would shrink to
 * "a read of a value never written" and lose the writes that show what went wrong.
 */
function minimize(ops: readonly Operation[], initial: State, maxSteps: number): Operation[] {
  const bad = unexplained(ops, initial);
  if (bad) return [bad];
  let current = [...ops];
  let budget = 5_000; // bounded: the explanation is a convenience, not a proof
  // Removing one op can make another removable (the property is not monotone), so repeat
  // passes until one removes nothing.
  for (let changed = true; changed && budget > 0; ) {
    changed = false;
    for (let i = 0; i < current.length && budget > 0; budget--) {
      const candidate = current.filter((_, j) => j !== i);
      if (
        unexplained(candidate, initial) === undefined &&
        search(candidate, initial, maxSteps) === "violation"
      ) {
        current = candidate;
        changed = true;
      } else {
        i++;
      }
    }
  }
  return current;
}

/** Checks that the history is linearizable for a register per key. */
export function checkLinearizability(
  history: History | readonly Operation[],
  options: CheckOptions = {},
): CheckResult {
  const ops = Array.isArray(history) ? (history as readonly Operation[]) : (history as History).operations();
  const maxSteps = options.maxSteps ?? 2_000_000;
  const initial = options.initial;
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    if (op.completeTime < op.invokeTime) {
      throw new RangeError(
        `operation ${op.id} completes (${op.completeTime}) before it is invoked (${op.invokeTime})`,
      );
    }
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const key of [...byKey.keys()].sort()) {
    const keyOps = byKey.get(key) as Operation[];
    const result = search(keyOps, initial, maxSteps);
    if (result === "ok") continue;
    if (result === "limit") {
      return {
        ok: false,
        kind: "limit",
        key,
        operations: keyOps,
        explanation: `key ${JSON.stringify(key)}: search gave up after ${maxSteps} steps over ${keyOps.length} operations; linearizability is unknown`,
      };
    }
    const offending = options.minimize === false ? keyOps : minimize(keyOps, initial, maxSteps);
    return {
      ok: false,
      kind: "violation",
      key,
      operations: offending,
      explanation: [
        `key ${JSON.stringify(key)}: not linearizable; no order of these ${offending.length} operations ` +
          `respects real time and register semantics (initial value ${initial === undefined ? "nil" : JSON.stringify(initial)}):`,
        ...offending.map((op) => `  ${formatOperation(op)}`),
      ].join("\n"),
    };
  }
  return { ok: true, keys: byKey.size, operations: ops.length };
}
