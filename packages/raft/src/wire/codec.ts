import type { Entry, EntryType, Message, MessageType, RaftMember, SnapshotMeta } from "../core/types.js";
import * as pb from "../gen/quorum/raft/v1/raft.js";

/** A piece of a snapshot image in flight; the core's snapshot message rides on the last one. */
export interface SnapshotChunk {
  readonly transferId: string;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly totalSize: number;
  readonly last: boolean;
  readonly message: Message | undefined;
}

export interface SnapshotAck {
  readonly transferId: string;
  readonly received: number;
  readonly reject: boolean;
}

/** One transport payload: a batch of Raft messages, or a step of a snapshot transfer. */
export interface RaftFrame {
  readonly messages: readonly Message[];
  readonly chunk?: SnapshotChunk | undefined;
  readonly ack?: SnapshotAck | undefined;
  /** The sender's peer address ("" when not given). */
  readonly fromAddress?: string | undefined;
}

const MESSAGE_TYPES: Record<MessageType, pb.MessageType> = {
  preVote: pb.MessageType.MESSAGE_TYPE_PRE_VOTE,
  preVoteResp: pb.MessageType.MESSAGE_TYPE_PRE_VOTE_RESP,
  vote: pb.MessageType.MESSAGE_TYPE_VOTE,
  voteResp: pb.MessageType.MESSAGE_TYPE_VOTE_RESP,
  append: pb.MessageType.MESSAGE_TYPE_APPEND,
  appendResp: pb.MessageType.MESSAGE_TYPE_APPEND_RESP,
  heartbeat: pb.MessageType.MESSAGE_TYPE_HEARTBEAT,
  heartbeatResp: pb.MessageType.MESSAGE_TYPE_HEARTBEAT_RESP,
  snapshot: pb.MessageType.MESSAGE_TYPE_SNAPSHOT,
  timeoutNow: pb.MessageType.MESSAGE_TYPE_TIMEOUT_NOW,
  readIndex: pb.MessageType.MESSAGE_TYPE_READ_INDEX,
  readIndexResp: pb.MessageType.MESSAGE_TYPE_READ_INDEX_RESP,
};
const MESSAGE_TYPE_NAMES = new Map<number, MessageType>(
  Object.entries(MESSAGE_TYPES).map(([name, code]) => [code, name as MessageType]),
);

const ENTRY_TYPES: Record<EntryType, pb.EntryType> = {
  normal: pb.EntryType.ENTRY_TYPE_NORMAL,
  noop: pb.EntryType.ENTRY_TYPE_NOOP,
  config: pb.EntryType.ENTRY_TYPE_CONFIG,
};
const ENTRY_TYPE_NAMES = new Map<number, EntryType>(
  Object.entries(ENTRY_TYPES).map(([name, code]) => [code, name as EntryType]),
);

export function encodeFrame(frame: RaftFrame): Uint8Array {
  return pb.Frame.encode({
    messages: frame.messages.map(toPbMessage),
    chunk: frame.chunk
      ? {
          transferId: frame.chunk.transferId,
          offset: frame.chunk.offset,
          data: Buffer.from(
            frame.chunk.data.buffer,
            frame.chunk.data.byteOffset,
            frame.chunk.data.byteLength,
          ),
          totalSize: frame.chunk.totalSize,
          last: frame.chunk.last,
          message: frame.chunk.message ? toPbMessage(frame.chunk.message) : undefined,
        }
      : undefined,
    ack: frame.ack,
    fromAddress: frame.fromAddress ?? "",
  }).finish();
}

export type DecodeResult =
  | { readonly ok: true; readonly frame: RaftFrame }
  | { readonly ok: false; readonly error: string };

/** Decodes a peer's payload. Never throws: a malformed frame is reported for the caller to drop and count. */
export function decodeFrame(bytes: Uint8Array): DecodeResult {
  let frame: pb.Frame;
  try {
    frame = pb.Frame.decode(bytes);
  } catch (err) {
    return { ok: false, error: `undecodable frame: ${err instanceof Error ? err.message : String(err)}` };
  }
  try {
    const messages = frame.messages.map(fromPbMessage);
    let chunk: SnapshotChunk | undefined;
    if (frame.chunk) {
      const c = frame.chunk;
      if (c.transferId === "") throw new WireError("snapshot chunk without a transfer id");
      chunk = {
        transferId: c.transferId,
        offset: c.offset,
        data: new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength),
        totalSize: c.totalSize,
        last: c.last,
        message: c.message ? fromPbMessage(c.message) : undefined,
      };
      if (chunk.last && chunk.message?.type !== "snapshot") {
        throw new WireError("the last snapshot chunk must carry the snapshot message");
      }
    }
    let ack: SnapshotAck | undefined;
    if (frame.ack) {
      if (frame.ack.transferId === "") throw new WireError("snapshot ack without a transfer id");
      ack = { transferId: frame.ack.transferId, received: frame.ack.received, reject: frame.ack.reject };
    }
    return { ok: true, frame: { messages, chunk, ack, fromAddress: frame.fromAddress } };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

class WireError extends Error {}

function toPbMessage(m: Message): pb.Message {
  return {
    type: MESSAGE_TYPES[m.type],
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map((e) => ({
      term: e.term,
      index: e.index,
      type: ENTRY_TYPES[e.type],
      data: Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength),
    })),
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    context: m.context,
    snapshot: m.snapshot ? toPbSnapshot(m.snapshot) : undefined,
  };
}

function toPbSnapshot(s: SnapshotMeta): pb.SnapshotMeta {
  return { index: s.index, term: s.term, members: s.members.map((m) => ({ ...m })) };
}

function fromPbMessage(m: pb.Message): Message {
  const type = MESSAGE_TYPE_NAMES.get(m.type);
  if (type === undefined) throw new WireError(`unknown message type ${m.type}`);
  if (m.from === "" || m.to === "") throw new WireError(`${type} message without a sender or a receiver`);
  if (type === "snapshot" && !m.snapshot) throw new WireError("snapshot message without its metadata");
  let prev = m.index;
  const entries: Entry[] = m.entries.map((e) => {
    const entryType = ENTRY_TYPE_NAMES.get(e.type);
    if (entryType === undefined) throw new WireError(`unknown entry type ${e.type}`);
    // Entries of one message are consecutive after prevLogIndex.
    if (e.index !== prev + 1) throw new WireError(`entry ${e.index} does not follow ${prev}`);
    prev = e.index;
    return {
      term: e.term,
      index: e.index,
      type: entryType,
      data: new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength),
    };
  });
  return {
    type,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries,
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    context: m.context,
    snapshot: m.snapshot ? fromPbSnapshotMeta(m.snapshot) : undefined,
  };
}

function fromPbSnapshotMeta(s: pb.SnapshotMeta): SnapshotMeta {
  const members: RaftMember[] = s.members.map((m) => {
    if (m.id === "") throw new WireError("snapshot member without an id");
    return { id: m.id, address: m.address, learner: m.learner };
  });
  return { index: s.index, term: s.term, members };
}
