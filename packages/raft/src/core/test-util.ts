import { seededRandom } from "@quorum/transport";
import { Raft, type RaftConfig } from "./raft.js";
import { MemoryStorage } from "./storage.js";
import type { Entry, Message, MessageFields, NodeId } from "./types.js";

/** A message with defaults, for feeding a core by hand. */
export function msg(fields: MessageFields & { from: NodeId }): Message {
  return {
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: "",
    snapshot: undefined,
    ...fields,
  };
}

/** Entries with the given terms from index `start` (commands "i"). */
export function entries(terms: readonly number[], start = 1): Entry[] {
  return terms.map((term, i) => ({
    term,
    index: start + i,
    type: "normal",
    data: new TextEncoder().encode(String(start + i)),
  }));
}

export function storageWith(ids: readonly NodeId[], terms: readonly number[] = [], term = 0): MemoryStorage {
  const s = MemoryStorage.bootstrap(ids.map((id) => ({ id, address: "", learner: false })));
  s.save({ entries: entries(terms), hardState: { term: Math.max(term, ...terms, 0), vote: "", commit: 0 } });
  return s;
}

/** A lone core over a fresh storage, configured for deterministic tests. */
export function newRaft(
  id: NodeId,
  ids: readonly NodeId[],
  extra: Partial<RaftConfig> = {},
  storage = storageWith(ids),
): Raft {
  return new Raft({ id, storage, random: seededRandom(7), electionTicks: 10, heartbeatTicks: 1, ...extra });
}

/** Takes the messages a core wants sent (and consumes its Ready, persisting into `storage` if given). */
export function drain(r: Raft, storage?: MemoryStorage): Message[] {
  const rd = r.ready();
  storage?.save({ hardState: rd.hardState, snapshot: rd.snapshot, entries: rd.entries });
  r.advance(rd);
  return [...rd.earlyMessages, ...rd.messages];
}
