// Two-phase commit between two SQLite-backed participants, with the coordinator crashing
// right after its decision.
//
// What it shows: a transfer between two banks commits atomically; then, in a second
// transfer, the coordinator makes its commit decision durable and dies before telling
// anyone. Both participants stay prepared (locks held, nothing applied, no way to decide
// alone: the blocking case of 2PC). The coordinator restarts, reads its decision log, and
// finishes the transaction: both sides apply it and the total is conserved.
//
// Run it (after `pnpm build` at the root):  node examples/dist/two-phase-commit.js

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryNetwork, systemClock, type Transport } from "@quorum/transport";
import {
  CoordinatorNode,
  type DecisionLog,
  type DecisionRecord,
  encodeKvOps,
  KvParticipant,
  ParticipantNode,
  SqliteDecisionLog,
  SqliteKvStorage,
  TxnError,
  type TxPart,
} from "@quorum/txn";
import { check, exitIfStuck, section, sleep, waitFor } from "./util.js";

exitIfStuck(20_000);

const dataDir = mkdtempSync(join(tmpdir(), "quorum-example-2pc-"));
const network = new MemoryNetwork();
const cleanups: (() => Promise<void> | void)[] = [];

// ---------------------------------------------------------------------------------------
// The participants: two key-value stores in SQLite files, one per bank.
//
// A participant votes on `prepare`: it locks the keys the ops touch, checks them (an
// overdraft votes no), and writes a durable prepare record *before* voting yes. After a yes
// it can no longer back out on its own; it waits for the coordinator's decision.
// ---------------------------------------------------------------------------------------
async function startParticipant(id: string, initial: [string, string][]) {
  const transport = network.join(id);
  const kv = new KvParticipant(new SqliteKvStorage(join(dataDir, `${id}.db`), initial), {
    clock: systemClock,
  });
  // The node runtime carries messages between the coordinator and the resource. A prepared
  // participant that hears no decision asks the coordinator every outcomeQueryIntervalMs.
  const node = await ParticipantNode.start({
    transport,
    clock: systemClock,
    participant: kv,
    config: { outcomeQueryIntervalMs: 50 },
  });
  cleanups.push(async () => {
    await node.close();
    kv.close();
    await transport.close();
  });
  return kv;
}

// ---------------------------------------------------------------------------------------
// The coordinator. Its decision log (SQLite, fsynced) is the commit point: a transaction is
// committed the moment its commit record is durable, whoever has or has not heard of it.
// No record means aborted ("presumed abort").
// ---------------------------------------------------------------------------------------
const decisionLogPath = join(dataDir, "coordinator.db");

async function startCoordinator(log: DecisionLog, transport: Transport) {
  return CoordinatorNode.start({
    transport,
    clock: systemClock,
    log,
    config: { voteTimeoutMs: 2_000, retryIntervalMs: 50 },
  });
}

/**
 * A decision log that makes the decision durable and then "crashes" its process before the
 * coordinator hears back: `crash` runs, and the write never returns. That is the worst
 * moment for 2PC: the outcome is decided, but nobody knows it yet.
 */
class CrashAfterDecision implements DecisionLog {
  constructor(
    private readonly inner: DecisionLog,
    /** Returns true when it crashed the coordinator. */
    private readonly crash: (record: DecisionRecord) => Promise<boolean>,
  ) {}
  load() {
    return this.inner.load();
  }
  get(txId: string) {
    return this.inner.get(txId);
  }
  forget(txIds: readonly string[]) {
    return this.inner.forget(txIds);
  }
  close() {
    return this.inner.close();
  }
  async decide(record: DecisionRecord): Promise<DecisionRecord> {
    const held = await this.inner.decide(record); // durable (fsynced) from here on
    if (!(await this.crash(record))) return held;
    return new Promise<never>(() => {}); // a crashed coordinator never continues
  }
}

function transfer(amount: number): TxPart[] {
  // Each participant gets its own ops. `min: 0` makes the participant vote no on an
  // overdraft, which would abort the whole transaction on both sides.
  return [
    { participant: "bank-a", ops: encodeKvOps([{ op: "add", key: "alice", delta: -amount, min: 0 }]) },
    { participant: "bank-b", ops: encodeKvOps([{ op: "add", key: "bob", delta: amount }]) },
  ];
}

function balances(a: KvParticipant, b: KvParticipant): string {
  return `alice=${a.get("alice")} bob=${b.get("bob")} total=${Number(a.get("alice")) + Number(b.get("bob"))}`;
}

async function main(): Promise<void> {
  const bankA = await startParticipant("bank-a", [["alice", "100"]]);
  const bankB = await startParticipant("bank-b", [["bob", "50"]]);
  console.log(`start: ${balances(bankA, bankB)}`);

  section("A transfer of 30 from alice to bob: prepare, both vote yes, commit");
  let crashed: (() => void) | undefined;
  const didCrash = new Promise<void>((resolve) => (crashed = resolve));
  let armed = false; // only the second transaction crashes the coordinator
  let transport = network.join("coordinator");
  const log = new CrashAfterDecision(new SqliteDecisionLog(decisionLogPath), async (record) => {
    if (!armed) return false;
    console.log(`  coordinator: commit record for ${record.txId} is durable ... and the coordinator crashes`);
    // A crash: the process and its connections vanish. Nothing more leaves it.
    await transport.close();
    await coordinator.close();
    await log.close();
    crashed?.();
    return true;
  });
  const coordinator = await startCoordinator(log, transport);
  const first = await coordinator.transact(transfer(30), { txId: "transfer-1" });
  console.log(`  outcome: ${first.status}`);
  check(first.status === "committed", "the first transfer committed");
  await waitFor(
    "both banks to apply it",
    () => (bankA.get("alice") === "70" && bankB.get("bob") === "80") || undefined,
  );
  console.log(`  ${balances(bankA, bankB)}`);

  section("A transfer of 20, and the coordinator crashes right after deciding commit");
  armed = true;
  // The client is in the same process here, so it hears how the crash looks from its side:
  // the decision was being written, so the outcome is unknown (never a false "aborted").
  const second = coordinator.transact(transfer(20), { txId: "transfer-2" }).then(
    (r) => r.status,
    (e: unknown) => (e instanceof TxnError ? e.code : String(e)),
  );
  await didCrash;
  const heard = await second;
  console.log(`  the client hears: ${heard}`);
  check(heard === "OUTCOME_UNKNOWN", "the client is told the outcome is unknown, not that it aborted");

  section("While the coordinator is down, the participants are stuck, and must be");
  await sleep(300); // a few outcome queries go unanswered
  for (const [name, kv] of [
    ["bank-a", bankA],
    ["bank-b", bankB],
  ] as const) {
    const status = await kv.status("transfer-2");
    console.log(`  ${name}: transfer-2 is ${status}, ${kv.lockStats().lockedKeys} key locked`);
    check(
      status === "prepared" && kv.lockStats().lockedKeys === 1,
      `${name} holds its yes vote and its lock`,
    );
  }
  // Neither may guess: the coordinator might have decided either way (here: commit).
  check(bankA.get("alice") === "70" && bankB.get("bob") === "80", "nothing of transfer-2 is applied yet");

  section("The coordinator restarts and reads its decision log");
  const recovered = new SqliteDecisionLog(decisionLogPath);
  const records = await recovered.load();
  console.log(`  decision log: ${records.map((r) => `${r.txId}=${r.decision}`).join(", ")}`);
  check(
    records.some((r) => r.txId === "transfer-2" && r.decision === "commit"),
    "the commit decision survived the crash",
  );
  transport = network.join("coordinator");
  // On start, the coordinator resumes every decided transaction: it sends commit again until
  // every participant acknowledges, then forgets the record.
  const restarted = await startCoordinator(recovered, transport);
  const restartedTransport = transport;
  cleanups.push(async () => {
    await restarted.close();
    await recovered.close();
    await restartedTransport.close();
  });
  await waitFor("both banks to apply transfer-2", async () =>
    (await bankA.status("transfer-2")) === "committed" && (await bankB.status("transfer-2")) === "committed"
      ? true
      : undefined,
  );
  await waitFor("the record to be forgotten", async () =>
    (await recovered.load()).length === 0 ? true : undefined,
  );
  console.log(`  ${balances(bankA, bankB)}`);
  check(bankA.get("alice") === "50" && bankB.get("bob") === "100", "transfer-2 is applied on both sides");
  check(bankA.lockStats().lockedKeys === 0 && bankB.lockStats().lockedKeys === 0, "every lock is released");
  check(Number(bankA.get("alice")) + Number(bankB.get("bob")) === 150, "the total is conserved");
  console.log("\nOK: the decision outlived the coordinator, and recovery finished the transaction");
}

try {
  await main();
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
  rmSync(dataDir, { recursive: true, force: true });
}
