import type { SimDisk, SimFile } from "@quorum/sim";
import type { AcceptorState, AcceptorStore, AcceptorUpdate, Ballot, SlotEntry, Value } from "../src/index.js";
import { ZERO_BALLOT } from "../src/index.js";

type V = [string, string[]];
interface Record {
  p?: [number, string];
  a: [number, number, string, V][];
  c: [number, V][];
  k?: [number, number];
}

const toV = (v: Value): V => [v.id, v.commands.map((c) => Buffer.from(c).toString("base64"))];
const fromV = ([id, cs]: V): Value => ({
  id,
  commands: cs.map((c) => new Uint8Array(Buffer.from(c, "base64"))),
});

export interface SimDiskStoreOptions {
  /** Called after each completed save (the simulation's crash-after-persist hook). */
  readonly afterSave?: ((update: AcceptorUpdate) => void) | undefined;
  /**
   * A deliberate bug, to show that the simulation catches it: "promised" drops the promised
   * ballot from every record; "sync" never syncs (a crash loses every save since the last).
   */
  readonly bug?: "promised" | "sync" | undefined;
}

function frame(r: Record): Uint8Array {
  const payload = Buffer.from(JSON.stringify(r), "utf8");
  const out = new Uint8Array(4 + payload.byteLength);
  new DataView(out.buffer).setUint32(0, payload.byteLength);
  out.set(payload, 4);
  return out;
}

/**
 * An AcceptorStore on the simulator's disk: one appended record per save, synced before
 * `save` returns, so a crash keeps exactly the saves that completed (a torn last record is
 * ignored on load).
 */
export class SimDiskAcceptorStore implements AcceptorStore {
  private readonly file: SimFile;

  constructor(
    disk: SimDisk,
    private readonly options: SimDiskStoreOptions = {},
  ) {
    this.file = disk.file("acceptor.log");
  }

  load(): AcceptorState {
    const bytes = this.file.read();
    let promised: Ballot = ZERO_BALLOT;
    const accepted = new Map<number, SlotEntry>();
    const chosen = new Map<number, Value>();
    let compacted: { slot: number; index: number } | undefined;
    let off = 0;
    while (off + 4 <= bytes.byteLength) {
      const len = new DataView(bytes.buffer, bytes.byteOffset + off, 4).getUint32(0);
      if (off + 4 + len > bytes.byteLength) break; // torn tail
      const r = JSON.parse(Buffer.from(bytes.subarray(off + 4, off + 4 + len)).toString("utf8")) as Record;
      if (r.p) promised = { round: r.p[0], node: r.p[1] };
      for (const [slot, round, node, v] of r.a)
        accepted.set(slot, { slot, ballot: { round, node }, value: fromV(v) });
      for (const [slot, v] of r.c) chosen.set(slot, fromV(v));
      if (r.k && r.k[0] > (compacted?.slot ?? 0)) {
        compacted = { slot: r.k[0], index: r.k[1] };
        for (const s of [...accepted.keys()]) if (s <= r.k[0]) accepted.delete(s);
        for (const s of [...chosen.keys()]) if (s <= r.k[0]) chosen.delete(s);
      }
      off += 4 + len;
    }
    return { promised, accepted, chosen, compacted };
  }

  save(update: AcceptorUpdate): void {
    const r: Record = {
      a: update.accepted.map((e) => [e.slot, e.ballot.round, e.ballot.node, toV(e.value)]),
      c: update.chosen.map((c) => [c.slot, toV(c.value)]),
    };
    if (update.compact) r.k = [update.compact.slot, update.compact.index];
    if (update.promised && this.options.bug !== "promised")
      r.p = [update.promised.round, update.promised.node];
    this.file.append(frame(r));
    if (update.compact) this.rewrite();
    if (this.options.bug !== "sync") this.file.sync();
    this.options.afterSave?.(update);
  }

  /** Compaction: replace the log by one record of the current state (an atomic rename). */
  private rewrite(): void {
    const st = this.load();
    const r: Record = {
      p: [st.promised.round, st.promised.node],
      a: [...st.accepted.values()].map((e) => [e.slot, e.ballot.round, e.ballot.node, toV(e.value)]),
      c: [...st.chosen].map(([slot, v]) => [slot, toV(v)]),
    };
    if (st.compacted) r.k = [st.compacted.slot, st.compacted.index];
    this.file.writeAll(frame(r));
  }

  close(): void {}
}
