import type { SimDisk, SimFile } from "@quorum/sim";
import type { AcceptorState, AcceptorStore, AcceptorUpdate, Ballot, SlotEntry, Value } from "../src/index.js";
import { ZERO_BALLOT } from "../src/index.js";

type V = [string, string[]];
interface Record {
  p?: [number, string];
  a: [number, number, string, V][];
  c: [number, V][];
}

const toV = (v: Value): V => [v.id, v.commands.map((c) => Buffer.from(c).toString("base64"))];
const fromV = ([id, cs]: V): Value => ({
  id,
  commands: cs.map((c) => new Uint8Array(Buffer.from(c, "base64"))),
});

/**
 * An AcceptorStore on the simulator's disk: one appended record per save, synced before
 * `save` returns, so a crash keeps exactly the saves that completed (a torn last record is
 * ignored on load).
 */
export class SimDiskAcceptorStore implements AcceptorStore {
  private readonly file: SimFile;

  constructor(disk: SimDisk) {
    this.file = disk.file("acceptor.log");
  }

  load(): AcceptorState {
    const bytes = this.file.read();
    let promised: Ballot = ZERO_BALLOT;
    const accepted = new Map<number, SlotEntry>();
    const chosen = new Map<number, Value>();
    let off = 0;
    while (off + 4 <= bytes.byteLength) {
      const len = new DataView(bytes.buffer, bytes.byteOffset + off, 4).getUint32(0);
      if (off + 4 + len > bytes.byteLength) break; // torn tail
      const r = JSON.parse(Buffer.from(bytes.subarray(off + 4, off + 4 + len)).toString("utf8")) as Record;
      if (r.p) promised = { round: r.p[0], node: r.p[1] };
      for (const [slot, round, node, v] of r.a)
        accepted.set(slot, { slot, ballot: { round, node }, value: fromV(v) });
      for (const [slot, v] of r.c) chosen.set(slot, fromV(v));
      off += 4 + len;
    }
    return { promised, accepted, chosen };
  }

  save(update: AcceptorUpdate): void {
    const r: Record = {
      a: update.accepted.map((e) => [e.slot, e.ballot.round, e.ballot.node, toV(e.value)]),
      c: update.chosen.map((c) => [c.slot, toV(c.value)]),
    };
    if (update.promised) r.p = [update.promised.round, update.promised.node];
    const payload = Buffer.from(JSON.stringify(r), "utf8");
    const out = new Uint8Array(4 + payload.byteLength);
    new DataView(out.buffer).setUint32(0, payload.byteLength);
    out.set(payload, 4);
    this.file.append(out);
    this.file.sync();
  }

  close(): void {}
}
