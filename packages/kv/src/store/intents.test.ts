import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { TxnPart, TxnVote } from "../gen/quorum/kv/v1/command.js";
import { conflicts, type Intent, IntentTable, type Lock, type LockMode, lockRange } from "./intents.js";

const keys = ["a", "ab", "b", "c", "c\u0000", "d"];
const lockArb: fc.Arbitrary<Lock> = fc
  .record({
    key: fc.constantFrom(...keys),
    // "": one key; "\0": from the key on; otherwise [key, end) (empty when end <= key)
    end: fc.constantFrom("", "", "", "\u0000", "b", "c\u0000", "e"),
    mode: fc.constantFrom<LockMode>("read", "write"),
  })
  .map(({ key, end, mode }) => lockRange(Buffer.from(key), Buffer.from(end), mode));

function intent(id: number, locks: Lock[]): Intent {
  return {
    txId: Buffer.from([id]),
    part: {} as TxnPart,
    preparedRevision: id,
    vote: {} as TxnVote,
    locks,
  };
}

describe("IntentTable", () => {
  it("finds a conflicting intent exactly when a scan of every intent does", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(7), fc.boolean(), fc.array(lockArb, { maxLength: 3 })), { maxLength: 30 }),
        fc.array(lockArb, { minLength: 1, maxLength: 3 }),
        fc.option(fc.nat(7), { nil: undefined }),
        (steps, query, except) => {
          const table = new IntentTable();
          const model = new Map<number, Intent>();
          for (const [id, add, locks] of steps) {
            if (add) {
              table.add(intent(id, locks));
              model.set(id, intent(id, locks));
            } else {
              table.remove(Buffer.from([id]));
              model.delete(id);
            }
          }
          const skip = except === undefined ? undefined : Buffer.from([except]);
          const expected = [...model.values()].filter(
            (i) => i.txId[0] !== except && query.some((q) => i.locks.some((h) => conflicts(q, h))),
          );
          const found = table.conflict(query, skip);
          if (expected.length === 0) expect(found).toBeUndefined();
          else expect(expected.map((i) => i.txId[0])).toContain(found?.txId[0]);
          expect(table.size).toBe(model.size);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("forgets a removed intent's locks", () => {
    const table = new IntentTable();
    const write = lockRange(Buffer.from("k"), Buffer.alloc(0), "write");
    table.add(intent(1, [write]));
    expect(table.conflict([lockRange(Buffer.from("k"), Buffer.alloc(0), "read")])?.txId[0]).toBe(1);
    table.remove(Buffer.from([1]));
    expect(table.conflict([write])).toBeUndefined();
    expect(table.size).toBe(0);
  });
});
