import type { Ballot, Message, MessageType, SlotEntry, Value } from "./core/types.js";
import { ZERO_BALLOT } from "./core/types.js";
import * as pb from "./gen/quorum/paxos/v1/paxos.js";

/** The transport channel Paxos messages travel on (a node's default `channel`). */
export const PAXOS_CHANNEL = "paxos";

/** A group's snapshots (chunks and their acks) travel on its channel plus this suffix. */
export const SNAPSHOT_SUFFIX = "-snapshot";

/** The transport channel the default group's snapshots travel on. */
export const PAXOS_SNAPSHOT_CHANNEL = `${PAXOS_CHANNEL}${SNAPSHOT_SUFFIX}`;

const toPb: Record<MessageType, pb.MessageType> = {
  prepare: pb.MessageType.MESSAGE_TYPE_PREPARE,
  promise: pb.MessageType.MESSAGE_TYPE_PROMISE,
  accept: pb.MessageType.MESSAGE_TYPE_ACCEPT,
  accepted: pb.MessageType.MESSAGE_TYPE_ACCEPTED,
  heartbeat: pb.MessageType.MESSAGE_TYPE_HEARTBEAT,
  heartbeatResp: pb.MessageType.MESSAGE_TYPE_HEARTBEAT_RESP,
  learn: pb.MessageType.MESSAGE_TYPE_LEARN,
  readIndex: pb.MessageType.MESSAGE_TYPE_READ_INDEX,
  readIndexResp: pb.MessageType.MESSAGE_TYPE_READ_INDEX_RESP,
  timeoutNow: pb.MessageType.MESSAGE_TYPE_TIMEOUT_NOW,
};
const fromPb = new Map<number, MessageType>(Object.entries(toPb).map(([k, v]) => [v, k as MessageType]));

/** ts-proto's node flavour types bytes as Buffer; a view over the same memory, no copy. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function valueToPb(v: Value): pb.Value {
  return { id: v.id, commands: v.commands.map(asBuffer) };
}

export function encodeValue(v: Value): Uint8Array {
  return pb.Value.encode(valueToPb(v)).finish();
}

export function decodeValue(bytes: Uint8Array): Value {
  const v = pb.Value.decode(bytes);
  return { id: v.id, commands: v.commands };
}

export function encodeMessage(m: Message): Uint8Array {
  return pb.Message.encode({
    type: toPb[m.type],
    from: m.from,
    to: m.to,
    ballot: m.ballot,
    slot: m.slot,
    entries: m.entries.map((e) => ({ slot: e.slot, ballot: e.ballot, value: valueToPb(e.value) })),
    commit: m.commit,
    reject: m.reject,
    promised: m.promised,
    context: m.context,
    slots: [...m.slots],
  }).finish();
}

/** Why a peer's bytes are not a message we can act on. */
export class MalformedMessage extends Error {
  override readonly name = "MalformedMessage";
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function slotNumber(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_SAFE)
    throw new MalformedMessage(`${what} ${n} is not a slot number`);
  return n;
}

function ballot(b: pb.Ballot | undefined, what: string, required: boolean): Ballot {
  if (!b) {
    if (required) throw new MalformedMessage(`${what} is missing`);
    return ZERO_BALLOT;
  }
  if (!Number.isSafeInteger(b.round) || b.round < 0)
    throw new MalformedMessage(`${what} round ${b.round} is invalid`);
  if (b.round > 0 && b.node === "") throw new MalformedMessage(`${what} names no node`);
  return { round: b.round, node: b.node };
}

/**
 * Decodes and validates a peer's message. Throws MalformedMessage (the caller drops and
 * counts it) for bytes that do not parse or break the message's rules.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  let raw: pb.Message;
  try {
    raw = pb.Message.decode(bytes);
  } catch (e) {
    throw new MalformedMessage(`undecodable: ${e instanceof Error ? e.message : String(e)}`);
  }
  const type = fromPb.get(raw.type);
  if (!type) throw new MalformedMessage(`unknown message type ${raw.type}`);
  if (raw.from === "" || raw.to === "") throw new MalformedMessage(`${type} without sender or receiver`);
  const entries: SlotEntry[] = raw.entries.map((e, i) => {
    if (!e.value) throw new MalformedMessage(`${type} entry ${i} has no value`);
    const slot = slotNumber(e.slot, `${type} entry ${i} slot`);
    if (slot === 0) throw new MalformedMessage(`${type} entry ${i} is for slot 0 (slots start at 1)`);
    return {
      slot,
      ballot: ballot(e.ballot, `${type} entry ${i} ballot`, false),
      value: { id: e.value.id, commands: e.value.commands },
    };
  });
  return {
    type,
    from: raw.from,
    to: raw.to,
    ballot: ballot(raw.ballot, `${type} ballot`, true),
    slot: slotNumber(raw.slot, `${type} slot`),
    entries,
    commit: slotNumber(raw.commit, `${type} commit`),
    reject: raw.reject,
    promised: ballot(raw.promised, `${type} promised ballot`, false),
    context: raw.context,
    slots: raw.slots.map((s) => slotNumber(s, `${type} accepted slot`)),
  };
}
