import type { LogEntry, ReplicatedLog, Snapshot, StateMachine } from "@quorum/consensus";
import type { ApplyResult, KvStore } from "../store/kv-store.js";

/**
 * Fences for simulated crashes. A simulated node's durable state (its consensus log and its
 * kv store) lives in databases that outlive the incarnation that wrote them, as files outlive
 * a killed process. A crashed incarnation's leftover callbacks must then write nothing and
 * answer nothing, or the simulation would keep what a real crash loses: each fence below
 * refuses the writes (or swallows the requests) of the incarnation whose `dead()` is true.
 */

type Method = (...args: never[]) => unknown;
type MethodName<S> = { [K in keyof S]-?: S[K] extends Method ? K : never }[keyof S] & string;

/**
 * `store` (any durable consensus storage: a Raft log, a Paxos acceptor store) as one
 * incarnation sees it: the `reads` pass through, the `writes` throw once it crashed, and
 * `close` does nothing, because the database outlives the incarnation (the harness closes it).
 * The methods are named rather than proxied, so the node sees exactly its storage interface.
 */
export function fencedStore<S extends { close(): void }, R extends MethodName<S>, W extends MethodName<S>>(
  store: S,
  dead: () => boolean,
  what: string,
  methods: { readonly reads: readonly R[]; readonly writes: readonly W[] },
): Pick<S, R | W | "close"> {
  const call = (name: R | W, args: unknown[]) =>
    (store[name] as (...a: unknown[]) => unknown).apply(store, args);
  const fenced: Record<string, unknown> = { close: () => {} };
  for (const name of methods.reads) fenced[name] = (...args: unknown[]) => call(name, args);
  for (const name of methods.writes) {
    fenced[name] = (...args: unknown[]) => {
      if (dead()) throw new Error(`${what} write from a crashed incarnation`);
      return call(name, args);
    };
  }
  return fenced as Pick<S, R | W | "close">;
}

/** The kv store as one incarnation's state machine: writes from a crashed one are refused. */
export function fencedMachine(store: KvStore, dead: () => boolean): StateMachine<ApplyResult> {
  const check = () => {
    if (dead()) throw new Error("state machine write from a crashed incarnation");
  };
  return {
    appliedIndex: () => store.appliedIndex(),
    apply: (entries: readonly LogEntry[]) => {
      check();
      return store.apply(entries);
    },
    snapshot: () => store.snapshot(),
    restore: async (snapshot: Snapshot) => {
      check();
      await store.restore(snapshot);
    },
  };
}

const never = <T>() => new Promise<T>(() => {});

/**
 * The log as one incarnation's services see it. A service's batcher and read barrier defer to
 * a `setImmediate`, which under the simulator runs after the scheduler's *next* event: a
 * request accepted just before a crash would otherwise reach the dead node's log. A crashed
 * process answers nothing, so neither does this: its proposals and reads never settle.
 */
export function fencedService(
  log: ReplicatedLog<ApplyResult>,
  dead: () => boolean,
): ReplicatedLog<ApplyResult> {
  const { proposeBatch, transferLeadership } = log;
  return {
    nodeId: log.nodeId,
    start: () => log.start(),
    propose: (command, options) => (dead() ? never() : log.propose(command, options)),
    // The optional methods stay absent where the log lacks them (the service checks).
    ...(proposeBatch
      ? {
          proposeBatch: (commands, options) => (dead() ? never() : proposeBatch.call(log, commands, options)),
        }
      : {}),
    read: (options) => (dead() ? never() : log.read(options)),
    status: () => log.status(),
    changeMembership: (change, options) => log.changeMembership(change, options),
    ...(transferLeadership
      ? { transferLeadership: (id, options) => transferLeadership.call(log, id, options) }
      : {}),
    subscribe: (listener) => log.subscribe(listener),
    close: () => log.close(),
  };
}
