import { describe, expect, it } from "vitest";
import type { Entry } from "../core/types.js";
import { type NodeView, SafetyChecker } from "./safety.js";

const entry = (index: number, term: number, data = `${index}`): Entry => ({
  index,
  term,
  type: "normal",
  data: new TextEncoder().encode(data),
});

const view = (id: string, entries: Entry[], extra: Partial<NodeView> = {}): NodeView => ({
  id,
  role: "follower",
  term: 1,
  commitIndex: 0,
  firstIndex: 1,
  entries,
  snapshotTerm: 0,
  ...extra,
});

describe("SafetyChecker (and its memo of entries already checked)", () => {
  it("log matching: the same index and term with other content, seen at a later step, is caught", () => {
    const c = new SafetyChecker();
    const a = [entry(1, 1), entry(2, 1)];
    c.observe([view("n1", a)]);
    c.observe([view("n1", a)]); // the same objects again: skipped, still fine
    expect(() => c.observe([view("n1", a), view("n2", [entry(1, 1), entry(2, 1, "other")])])).toThrow(
      /log matching/,
    );
  });

  it("log matching: an entry object already checked, now behind a different predecessor, is checked again", () => {
    const c = new SafetyChecker();
    const second = entry(2, 2);
    c.observe([view("n1", [entry(1, 1), second])]);
    expect(() => c.observe([view("n2", [entry(1, 2), second])])).toThrow(/log matching/);
  });

  it("state machine safety: a committed index holding another term later is caught", () => {
    const c = new SafetyChecker();
    c.observe([view("n1", [entry(1, 1)], { commitIndex: 1 })]);
    expect(() => c.observe([view("n2", [entry(1, 2)], { commitIndex: 1, term: 2 })])).toThrow(
      /state machine safety/,
    );
  });

  it("election safety and leader completeness", () => {
    const c = new SafetyChecker();
    c.observe([view("n1", [entry(1, 1)], { role: "leader", commitIndex: 1 })]);
    expect(() => c.observe([view("n2", [], { role: "leader" })])).toThrow(/election safety/);
    const d = new SafetyChecker();
    d.observe([view("n1", [entry(1, 1)], { role: "leader", commitIndex: 1 })]);
    expect(() => d.observe([view("n2", [], { role: "leader", term: 2 })])).toThrow(/leader completeness/);
  });
});
