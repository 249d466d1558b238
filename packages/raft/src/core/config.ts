import type { ConfChange, Entry, NodeId, RaftMember } from "./types.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The bytes of a `config` entry. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify(change));
}

/** Reads a `config` entry's change; undefined when the bytes are not one. */
export function decodeConfChange(data: Uint8Array): ConfChange | undefined {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.id !== "string" || v.id === "") return undefined;
  switch (v.type) {
    case "addLearner":
    case "addVoter":
      return typeof v.address === "string" ? { type: v.type, id: v.id, address: v.address } : undefined;
    case "promote":
    case "remove":
      return { type: v.type, id: v.id };
    default:
      return undefined;
  }
}

/** Why a change cannot apply to `members`, or undefined when it can. */
export function checkConfChange(members: readonly RaftMember[], change: ConfChange): string | undefined {
  const current = members.find((m) => m.id === change.id);
  switch (change.type) {
    case "addLearner":
      return current ? `${change.id} is already a member` : undefined;
    case "addVoter":
      return current && !current.learner ? `${change.id} is already a voter` : undefined;
    case "promote":
      if (!current) return `${change.id} is not a member`;
      return current.learner ? undefined : `${change.id} is already a voter`;
    case "remove": {
      if (!current) return `${change.id} is not a member`;
      const voters = members.filter((m) => !m.learner);
      if (!current.learner && voters.length === 1) return `cannot remove the last voter ${change.id}`;
      return undefined;
    }
  }
}

/** The configuration after `change` (which must pass `checkConfChange`; otherwise unchanged). */
export function applyConfChange(members: readonly RaftMember[], change: ConfChange): RaftMember[] {
  if (checkConfChange(members, change) !== undefined) return [...members];
  switch (change.type) {
    case "addLearner":
      return [...members, { id: change.id, address: change.address, learner: true }];
    case "addVoter": {
      const rest = members.filter((m) => m.id !== change.id);
      return [...rest, { id: change.id, address: change.address, learner: false }];
    }
    case "promote":
      return members.map((m) => (m.id === change.id ? { ...m, learner: false } : m));
    case "remove":
      return members.filter((m) => m.id !== change.id);
  }
}

/** The configuration in effect after `entries` (config entries among them) starting from `base`. */
export function membersAfter(base: readonly RaftMember[], entries: readonly Entry[]): readonly RaftMember[] {
  let members = base;
  for (const e of entries) {
    if (e.type !== "config") continue;
    const change = decodeConfChange(e.data);
    if (change) members = applyConfChange(members, change);
  }
  return members;
}

export function voterIds(members: readonly RaftMember[]): NodeId[] {
  return members.filter((m) => !m.learner).map((m) => m.id);
}
