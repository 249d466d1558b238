import type { SimFile } from "@quorum/sim";
import type {
  Decision,
  DecisionLog,
  DecisionRecord,
  KvLoaded,
  KvStorage,
  PreparedRecord,
  TxId,
} from "@quorum/txn";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Complete JSON lines of a file; a torn last line (no newline) is ignored. */
function lines(file: SimFile): unknown[] {
  const text = dec.decode(file.read());
  const parts = text.split("\n");
  parts.pop();
  return parts.filter((l) => l.length > 0).map((l) => JSON.parse(l) as unknown);
}

function append(file: SimFile, entry: unknown, sync: boolean): void {
  file.append(enc.encode(`${JSON.stringify(entry)}\n`));
  if (sync) file.sync();
}

type DecisionEntry = { d: DecisionRecord } | { f: TxId[] };

/** A decision log on a simulated disk: `decide` appends and syncs; `forget` is lazy. */
export class SimDiskDecisionLog implements DecisionLog {
  private readonly records = new Map<TxId, DecisionRecord>();

  /**
   * `fsync` is how a sync takes virtual time (the node's clock, so a crash in between cancels
   * it and the unsynced record is lost, as with a real fsync cut short).
   */
  constructor(
    private readonly file: SimFile,
    private readonly fsync: (done: () => void) => void = (done) => done(),
  ) {
    for (const e of lines(file) as DecisionEntry[]) {
      if ("d" in e) {
        if (!this.records.has(e.d.txId)) this.records.set(e.d.txId, e.d);
      } else for (const id of e.f) this.records.delete(id);
    }
  }

  async load(): Promise<DecisionRecord[]> {
    return [...this.records.values()];
  }

  async decide(record: DecisionRecord): Promise<DecisionRecord> {
    const held = this.records.get(record.txId);
    if (held !== undefined) return held;
    append(this.file, { d: record }, false);
    this.records.set(record.txId, record);
    await new Promise<void>((resolve) => this.fsync(resolve));
    this.file.sync();
    return record;
  }

  async get(txId: TxId): Promise<DecisionRecord | undefined> {
    return this.records.get(txId);
  }

  async forget(txIds: readonly TxId[]): Promise<void> {
    append(this.file, { f: txIds }, false);
    for (const id of txIds) this.records.delete(id);
  }

  async close(): Promise<void> {}
}

type KvEntry =
  | { t: "init"; data: [string, string][] }
  | { t: "prep"; rec: Omit<PreparedRecord, "result"> & { result: string } }
  | { t: "out"; txId: TxId; decision: Decision; writes: [string, string | null][] };

/** A key-value participant's storage on a simulated disk: every record is appended and synced. */
export class SimDiskKvStorage implements KvStorage {
  constructor(
    private readonly file: SimFile,
    initial: [string, string][],
  ) {
    if (file.size() === 0) append(file, { t: "init", data: initial }, true);
  }

  load(): KvLoaded {
    const data = new Map<string, string>();
    const prepared = new Map<TxId, PreparedRecord>();
    const finished = new Map<TxId, Decision>();
    for (const e of lines(this.file) as KvEntry[]) {
      if (e.t === "init") for (const [k, v] of e.data) data.set(k, v);
      else if (e.t === "prep") {
        prepared.set(e.rec.txId, { ...e.rec, result: Buffer.from(e.rec.result, "base64") });
      } else {
        if (e.decision === "commit") {
          for (const [k, v] of e.writes) {
            if (v === null) data.delete(k);
            else data.set(k, v);
          }
        }
        prepared.delete(e.txId);
        finished.set(e.txId, e.decision);
      }
    }
    return { data, prepared: [...prepared.values()], finished };
  }

  savePrepare(record: PreparedRecord): void {
    const rec = { ...record, result: Buffer.from(record.result).toString("base64") };
    append(this.file, { t: "prep", rec }, true);
  }

  saveOutcome(txId: TxId, decision: Decision, writes: PreparedRecord["writes"]): void {
    append(this.file, { t: "out", txId, decision, writes }, true);
  }

  close(): void {}
}
